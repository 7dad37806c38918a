//! Materialised views kept in memory for key lookups.
//!
//! A view whose query ends in `ORDER BY` plain columns declares those columns its lookup
//! keys (`profiles` by `unified_id`, `identity_lookup` by `id_type, id_value`). The first
//! scan of such a view loads its stored rows, in the background, into one Arrow batch
//! sorted by the keys; from then on its scans read that batch ([`ResidentExec`]) and
//! find the rows of a key by binary search instead of decoding Parquet pages: a filter
//! `key = value` (or `<`, `<=`, `>`, `>=`) narrows the rows at planning time, and a
//! join's dynamic filter (the bounds of its build side) narrows them when the scan runs.
//! Scans keep reading the Delta table while the batch loads.
//!
//! The batch belongs to one state of the view's stored rows (a snapshot of its Delta
//! table, and the overlay of an incremental refresh over it): after a refresh, scans
//! read the stored rows again until their new state is loaded. Resident batches are counted
//! in the server's memory pool, and together may take at most a quarter of it
//! ([`SHARE`]); a view that does not fit stays on disk (its scans are unchanged).
//! Masking, consent and erasure filtering apply above the scan as for any table.

mod exec;
pub mod generic;

use std::cmp::Ordering;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{make_comparator, Array, RecordBatch};
use datafusion::arrow::compute::{
    concat_batches, lexsort_to_indices, take_record_batch, SortColumn, SortOptions,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, Operator};
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::physical_expr::snapshot_physical_expr;
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use datafusion::sql::sqlparser::ast::{self, OrderByKind, Query};
use futures::StreamExt;
use tracing::{debug, info};

pub use exec::ResidentExec;

use super::overlay::{Current, Stored};
use crate::engine::compact_views::compact;

/// The share of the memory pool (in quarters) that resident views may take together.
const SHARE: usize = 4;

/// The order of resident rows: by the keys, ascending, NULLs last (as `ORDER BY`).
const ORDER: SortOptions = SortOptions {
    descending: false,
    nulls_first: false,
};

/// Bytes held by resident batches, all views together.
static RESIDENT_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The lookup keys of a view defined by `query`: the leading plain columns of its
/// `ORDER BY` (ascending), if any.
pub fn lookup_keys(query: &Query) -> Vec<String> {
    let Some(order_by) = &query.order_by else {
        return vec![];
    };
    let OrderByKind::Expressions(items) = &order_by.kind else {
        return vec![];
    };
    items
        .iter()
        .map_while(|item| match &item.expr {
            ast::Expr::Identifier(id) if item.options.asc != Some(false) => Some(id.value.clone()),
            _ => None,
        })
        .collect()
}

/// One state of a view's rows, sorted by its keys.
#[derive(Debug)]
pub struct Resident {
    /// The state of the view's stored rows these are of (its Delta table's snapshot and
    /// overlay when they were loaded).
    source: Current,
    batch: RecordBatch,
    /// Column indexes of the keys, in sort order.
    keys: Vec<usize>,
    bytes: usize,
    _reservation: MemoryReservation,
}

impl Drop for Resident {
    fn drop(&mut self) {
        RESIDENT_BYTES.fetch_sub(self.bytes, AtomicOrdering::Relaxed);
    }
}

impl Resident {
    fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether `filters` compare the first key with a value (so they narrow the rows).
    fn keyed(&self, filters: &[Arc<dyn PhysicalExpr>]) -> bool {
        let Some(&first) = self.keys.first() else {
            return false;
        };
        let name = self.batch.schema().field(first).name().clone();
        conjuncts(filters)
            .iter()
            .any(|c| comparison(c, &name).is_some())
    }

    /// The rows of `range` that `filters` (conjuncts over the view's columns, by name)
    /// can hold, by binary search on the keys: each key narrowed by equality lets the
    /// next key narrow further; the first key without one may still be bounded.
    fn narrow(&self, filters: &[Arc<dyn PhysicalExpr>], mut range: Range<usize>) -> Range<usize> {
        let conjuncts = conjuncts(filters);
        let schema = self.batch.schema();
        for &key in &self.keys {
            let name = schema.field(key).name();
            let column = self.batch.column(key);
            let mut equal = false;
            // `key >= v AND key <= v` (the bounds of a one-row join build) is equality.
            let (mut at_least, mut at_most) = (None, None);
            for (op, value) in conjuncts.iter().filter_map(|c| comparison(c, name)) {
                // Only a value of the key's own type (text in any encoding) narrows: a
                // cast could round it (a float to an integer, nanoseconds to micro).
                let same = value.data_type() == *column.data_type()
                    || (is_text(&value.data_type()) && is_text(column.data_type()));
                let Ok(value) = value.cast_to(column.data_type()) else {
                    continue;
                };
                if !same {
                    continue;
                }
                let Ok(array) = value.to_array() else {
                    continue;
                };
                let Ok(cmp) = make_comparator(column.as_ref(), array.as_ref(), ORDER) else {
                    continue;
                };
                let before = first_where(&range, |i| cmp(i, 0) != Ordering::Less);
                let after = first_where(&range, |i| cmp(i, 0) == Ordering::Greater);
                match op {
                    Operator::Eq => {
                        range = before..after;
                        equal = true;
                    }
                    Operator::GtEq => {
                        range.start = range.start.max(before);
                        at_least = Some(value);
                    }
                    Operator::Gt => range.start = range.start.max(after),
                    Operator::LtEq => {
                        range.end = range.end.min(after);
                        at_most = Some(value);
                    }
                    Operator::Lt => range.end = range.end.min(before),
                    _ => {}
                }
                range.end = range.end.max(range.start);
            }
            equal |= at_least.is_some() && at_least == at_most;
            if !equal {
                break;
            }
        }
        range
    }
}

/// The conjuncts of `filters`, dynamic ones as they stand now.
fn conjuncts(filters: &[Arc<dyn PhysicalExpr>]) -> Vec<Arc<dyn PhysicalExpr>> {
    filters
        .iter()
        .filter_map(|f| snapshot_physical_expr(f.clone()).ok())
        .flat_map(|f| {
            split_conjunction(&f)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The first index of `range` for which `past` holds (`past` is false, then true).
fn first_where(range: &Range<usize>, past: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (range.start, range.end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if past(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// `column op value` (or `value op column`) with a non-null literal value.
fn comparison(expr: &Arc<dyn PhysicalExpr>, column: &str) -> Option<(Operator, ScalarValue)> {
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    let named = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Column>()
            .is_some_and(|c| c.name() == column)
    };
    let value = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Literal>()
            .map(|l| l.value().clone())
            .filter(|v| !v.is_null())
    };
    let op = *binary.op();
    if named(binary.left()) {
        Some((op, value(binary.right())?))
    } else if named(binary.right()) {
        Some((op.swap()?, value(binary.left())?))
    } else {
        None
    }
}

/// What a view has in memory.
#[derive(Debug, Default)]
enum Slot {
    #[default]
    Empty,
    /// Loading the state held (or refused: it did not fit or failed to load).
    Pending(Current),
    Ready(Arc<Resident>),
}

/// The resident rows of one view (see the module documentation).
#[derive(Debug)]
pub struct Residency {
    name: String,
    keys: Vec<String>,
    slot: Mutex<Slot>,
}

impl Residency {
    /// `None` for a view without lookup keys.
    pub fn new(name: &str, keys: Vec<String>) -> Option<Arc<Self>> {
        (!keys.is_empty()).then(|| {
            Arc::new(Residency {
                name: name.to_string(),
                keys,
                slot: Mutex::new(Slot::Empty),
            })
        })
    }

    /// Let go of what is in memory (and of any load under way).
    pub fn release(&self) {
        let old = std::mem::take(&mut *self.slot.lock().unwrap_or_else(|e| e.into_inner()));
        if matches!(old, Slot::Ready(_)) {
            generic::released();
        }
    }

    /// Whether `data` is what is in memory.
    fn holds(&self, data: &Arc<Resident>) -> bool {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        matches!(&*slot, Slot::Ready(r) if Arc::ptr_eq(r, data))
    }

    /// A scan of the view's rows (`source`: its stored rows) from memory if their
    /// current state is loaded; otherwise `None`, and its loading is started unless it
    /// already was.
    pub async fn scan(
        self: &Arc<Self>,
        source: &Stored,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let current = &source.current();
        let ready = {
            let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Slot::Ready(r) if r.source.same(current) => Some(r.clone()),
                Slot::Pending(s) if s.same(current) => return Ok(None),
                _ => None,
            }
        };
        let Some(resident) = ready else {
            // The scan goes on from disk whatever becomes of the loading.
            if let Err(e) = self.start_loading(current, state).await {
                info!("materialized view \"{}\" stays on disk: {e}", self.name);
            }
            return Ok(None);
        };
        let schema = resident.batch.schema();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let physical: Vec<Arc<dyn PhysicalExpr>> = filters
            .iter()
            .filter_map(|f| state.create_physical_expr(f.clone(), &df_schema).ok())
            .collect();
        // Parameters (of a generic plan) narrow with their hints here: the estimates
        // that shape the plan come from them.
        let hinted = physical
            .iter()
            .map(|f| generic::bound(f, None))
            .collect::<Result<Vec<_>>>()?;
        let range = resident.narrow(&hinted, 0..resident.rows());
        let keyed = resident.keyed(&hinted);
        // A lookup narrowed at planning time reads one partition; other scans share
        // their rows among the session's partitions.
        let partitions = if range.len() < state.config().batch_size() {
            1
        } else {
            state.config().target_partitions()
        };
        let unbound = physical.iter().any(generic::has_params).then_some(physical);
        let exec = ResidentExec::new(resident, projection, range, keyed, partitions, limit)?
            .of(Some((source.clone(), self.clone())), unbound);
        Ok(Some(Arc::new(exec)))
    }

    /// Load `source` in the background, replacing what is in memory once it is loaded.
    async fn start_loading(self: &Arc<Self>, source: &Current, state: &dyn Session) -> Result<()> {
        // Planned before the slot changes: a statement cancelled here leaves no load
        // pending that never runs.
        let plan = source.scan(state, None, &[], None).await?;
        let old = {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Slot::Pending(s) if s.same(source) => return Ok(()),
                Slot::Ready(r) if r.source.same(source) => return Ok(()),
                // What is in memory now is of an older state: let it go.
                _ => std::mem::replace(&mut *slot, Slot::Pending(source.clone())),
            }
        };
        if matches!(old, Slot::Ready(_)) {
            drop(old);
            generic::released();
        }
        let context = state.task_ctx();
        let (this, source) = (self.clone(), source.clone());
        tokio::spawn(async move {
            let loaded = this.load(&source, plan, context).await;
            let mut slot = this.slot.lock().unwrap_or_else(|e| e.into_inner());
            // A newer state may have started loading meanwhile: it wins.
            if !matches!(&*slot, Slot::Pending(s) if s.same(&source)) {
                return;
            }
            match loaded {
                Ok(Some(resident)) => *slot = Slot::Ready(Arc::new(resident)),
                Ok(None) => {}
                Err(e) => info!("materialized view \"{}\" stays on disk: {e}", this.name),
            }
        });
        Ok(())
    }

    /// The rows of `source` sorted by the keys, if they fit the resident share of the
    /// pool.
    async fn load(
        &self,
        source: &Current,
        plan: Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
    ) -> Result<Option<Resident>> {
        let started = std::time::Instant::now();
        let schema: SchemaRef = plan.schema();
        let keys = self
            .keys
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let pool = &context.runtime_env().memory_pool;
        let cap = match pool.memory_limit() {
            MemoryLimit::Finite(n) => n / SHARE,
            _ => usize::MAX,
        };
        // Read while the rows fit what is left of the resident share (checked again
        // below for the sorted copy), so a view too large is never held whole.
        let mut stream = execute_stream(plan, context.clone())?;
        let mut batches = vec![];
        let mut read = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            read += batch.get_array_memory_size();
            if RESIDENT_BYTES.load(AtomicOrdering::Relaxed) + read > cap {
                info!(
                    "materialized view \"{}\" stays on disk: over {read} bytes, past the resident share of the memory pool",
                    self.name
                );
                return Ok(None);
            }
            batches.push(batch);
        }
        let batch = concat_batches(&schema, &batches)?;
        drop(batches);
        let columns: Vec<SortColumn> = keys
            .iter()
            .map(|&k| SortColumn {
                values: batch.column(k).clone(),
                options: Some(ORDER),
            })
            .collect();
        let order = lexsort_to_indices(&columns, None)?;
        // The sorted copy keeps every data buffer of every batch read: its text is
        // copied into few buffers, or each lookup's slice would carry the whole list.
        let batch = compact(take_record_batch(&batch, &order)?)?;
        let bytes = batch.get_array_memory_size();
        let held = RESIDENT_BYTES.fetch_add(bytes, AtomicOrdering::Relaxed);
        let reservation = MemoryConsumer::new(format!("resident {}", self.name)).register(pool);
        if held + bytes > cap || reservation.try_grow(bytes).is_err() {
            RESIDENT_BYTES.fetch_sub(bytes, AtomicOrdering::Relaxed);
            info!(
                "materialized view \"{}\" stays on disk: its {} rows take {bytes} bytes, over the resident share of the memory pool",
                self.name,
                batch.num_rows()
            );
            return Ok(None);
        }
        debug!(
            "materialized view \"{}\": {} rows ({bytes} bytes) resident in {:?}",
            self.name,
            batch.num_rows(),
            started.elapsed()
        );
        Ok(Some(Resident {
            source: source.clone(),
            batch,
            keys,
            bytes,
            _reservation: reservation,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringViewArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::empty::EmptyTable;
    use datafusion::execution::memory_pool::{MemoryPool, UnboundedMemoryPool};
    use datafusion::physical_expr::expressions::{col, lit};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn keys_of(sql: &str) -> Vec<String> {
        let query = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_query())
            .expect(sql);
        lookup_keys(&query)
    }

    #[test]
    fn letting_resident_rows_go_drops_the_generic_plans_that_hold_them() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let holder: generic::Holder = Arc::new(move || {
            counted.fetch_add(1, AtomicOrdering::SeqCst);
        });
        generic::on_release(&holder);
        let residency = Residency::new("v", vec!["k1".into()]).expect("keyed");
        residency.release();
        assert_eq!(
            calls.load(AtomicOrdering::SeqCst),
            0,
            "nothing was in memory"
        );
        *residency.slot.lock().expect("slot") = Slot::Ready(Arc::new(resident()));
        residency.release();
        assert_eq!(calls.load(AtomicOrdering::SeqCst), 1);
        // A dropped holder is no longer called.
        drop(holder);
        *residency.slot.lock().expect("slot") = Slot::Ready(Arc::new(resident()));
        residency.release();
        assert_eq!(calls.load(AtomicOrdering::SeqCst), 1);
    }

    #[test]
    fn the_leading_plain_ascending_order_by_columns_are_the_keys() {
        assert_eq!(keys_of("SELECT * FROM t ORDER BY a, b"), ["a", "b"]);
        assert_eq!(
            keys_of("SELECT * FROM t ORDER BY a ASC, lower(b), c"),
            ["a"]
        );
        assert_eq!(keys_of("SELECT * FROM t ORDER BY a, b DESC"), ["a"]);
        assert!(keys_of("SELECT * FROM t ORDER BY a DESC").is_empty());
        assert!(keys_of("SELECT * FROM t ORDER BY 1").is_empty());
        assert!(keys_of("SELECT * FROM t").is_empty());
    }

    /// Rows sorted by (k1, k2), NULL last.
    pub(super) fn resident() -> Resident {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k1", DataType::Utf8View, true),
            Field::new("k2", DataType::Int64, true),
        ]));
        let k1 = StringViewArray::from(vec![
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("b"),
            Some("c"),
            None,
        ]);
        let k2 = Int64Array::from(vec![1, 2, 1, 2, 3, 1, 1]);
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(k1), Arc::new(k2)]).expect("batch");
        let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        Resident {
            source: Current {
                snapshot: Arc::new(EmptyTable::new(schema)),
                tag: 0,
                layer: None,
            },
            batch,
            keys: vec![0, 1],
            bytes: 0,
            _reservation: MemoryConsumer::new("test").register(&pool),
        }
    }

    fn compare(column: &str, op: Operator, value: ScalarValue) -> Arc<dyn PhysicalExpr> {
        let schema = resident().batch.schema();
        Arc::new(BinaryExpr::new(
            col(column, &schema).expect("column"),
            op,
            lit(value),
        ))
    }

    #[test]
    fn filters_on_the_keys_narrow_the_rows_by_binary_search() {
        let r = resident();
        let text = |s: &str| ScalarValue::Utf8View(Some(s.into()));
        let narrow = |filters: Vec<Arc<dyn PhysicalExpr>>| r.narrow(&filters, 0..7);
        assert_eq!(narrow(vec![compare("k1", Operator::Eq, text("b"))]), 2..5);
        assert_eq!(
            narrow(vec![
                compare("k1", Operator::Eq, text("b")),
                compare("k2", Operator::GtEq, ScalarValue::Int64(Some(2))),
            ]),
            3..5
        );
        // Both bounds at one value are equality: the second key narrows under them.
        assert_eq!(
            narrow(vec![
                compare("k1", Operator::GtEq, text("b")),
                compare("k1", Operator::LtEq, text("b")),
                compare("k2", Operator::GtEq, ScalarValue::Int64(Some(2))),
            ]),
            3..5
        );
        assert_eq!(
            narrow(vec![
                compare("k1", Operator::GtEq, text("a")),
                compare("k1", Operator::LtEq, text("b")),
                compare("k2", Operator::GtEq, ScalarValue::Int64(Some(2))),
            ]),
            0..5
        );
        // A plain Utf8 value is cast to the key's type.
        assert_eq!(
            narrow(vec![compare(
                "k1",
                Operator::Lt,
                ScalarValue::Utf8(Some("b".into()))
            )]),
            0..2
        );
        assert_eq!(
            narrow(vec![compare("k1", Operator::Gt, text("b"))]),
            5..7,
            "NULL last"
        );
        assert_eq!(narrow(vec![compare("k1", Operator::Eq, text("zz"))]), 6..6);
        // The second key narrows only under equality on the first.
        assert_eq!(
            narrow(vec![compare(
                "k2",
                Operator::Eq,
                ScalarValue::Int64(Some(1))
            )]),
            0..7
        );
        // Value on the left; NULL values and other operators do not narrow.
        let flipped = Arc::new(BinaryExpr::new(
            lit(text("c")),
            Operator::Gt,
            col("k1", &r.batch.schema()).expect("column"),
        ));
        assert_eq!(narrow(vec![flipped]), 0..5);
        assert_eq!(
            narrow(vec![compare(
                "k1",
                Operator::Eq,
                ScalarValue::Utf8View(None)
            )]),
            0..7
        );
        assert_eq!(
            narrow(vec![compare("k1", Operator::NotEq, text("a"))]),
            0..7
        );
    }

    #[test]
    fn first_where_finds_the_boundary() {
        assert_eq!(first_where(&(0..10), |i| i >= 4), 4);
        assert_eq!(first_where(&(3..10), |_| true), 3);
        assert_eq!(first_where(&(3..10), |_| false), 10);
        assert_eq!(first_where(&(5..5), |_| true), 5);
    }
}
