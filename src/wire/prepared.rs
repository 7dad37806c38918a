//! Queries in the extended protocol: planned once, executed many times.
//!
//! datafusion-postgres plans a bound portal from scratch on every Execute, and runs
//! DataFusion's analyzer and optimiser on it twice (once itself, once more when the
//! physical plan is built). For a profile lookup that was most of the statement's cost.
//! Here a query is analysed and optimised once with its parameters as placeholders, and
//! the result is kept for its text, its unplanned form and the role it ran as. Each
//! execution then binds the values into the kept plan and builds only the physical plan
//! (where scans prune with the bound values and the masking of personal data is applied).
//!
//! A kept plan whose scans are all resident materialised views (see
//! [`crate::engine::matview::resident`]) also gets a generic physical plan, planned once
//! with its parameters left unbound (as PostgreSQL's generic plans): each execution binds
//! the values into the scans, resets the plan's state and pushes its joins' dynamic
//! filters again, instead of planning anew. It is planned again when a view it reads
//! was refreshed. A plan with any other scan keeps being planned per execution, so its
//! scans prune with the values.
//!
//! A kept plan is valid while [`Engine::plan_epoch`] stays the same: the engine changes
//! it after any DDL, grant, classification, erasure or setting. Plans that read the
//! clock or the session (STABLE functions such as `now()` or `current_user`, which the
//! optimiser folds into constants) and catalog queries are never kept.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::fields::pg_fields;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, Operator, Volatility};
use datafusion::optimizer::simplify_expressions::SimplifyExpressions;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use pgwire::api::portal::Portal;
use pgwire::api::results::Response;
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::types::format::FormatOptions;

use super::Statement;
use crate::access::Principal;
use crate::engine::matview::resident::generic;
use crate::engine::Engine;

/// How many statement texts are kept; past that the cache starts again empty.
const MAX_TEXTS: usize = 1024;

/// An optimised plan kept for reuse.
struct Kept {
    /// The plan as Parse left it (the key, with the text).
    unplanned: LogicalPlan,
    principal: Principal,
    epoch: u64,
    optimised: Arc<LogicalPlan>,
    /// The types its placeholders were given, by id (`None`: placed with two types).
    placed: HashMap<String, Option<DataType>>,
    /// Whether bound values make constant expressions to fold (see [`folds`]).
    folds: bool,
    generic: Mutex<Generic>,
}

impl Kept {
    /// Bind `params` into the optimised plan. Constant expressions the values make
    /// (`CAST($1 AS ...)`, `$1 IS NULL`) are folded again, so scans prune with plain
    /// values.
    fn bind(&self, state: &SessionState, params: ParamValues) -> PgWireResult<LogicalPlan> {
        let params = self.typed(params)?;
        let bound = self
            .optimised
            .as_ref()
            .clone()
            .replace_params_with_values(&params)
            .map_err(api)?;
        if !self.folds {
            return Ok(bound);
        }
        let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> =
            vec![Arc::new(SimplifyExpressions::new())];
        Optimizer::with_rules(rules)
            .optimize(bound, state, |_, _| {})
            .map_err(api)
    }

    /// `params` cast to the types their placeholders have in the optimised plan. Type
    /// coercion ran while they were placeholders (a text parameter compared with a
    /// `Utf8View` column became a `Utf8View` placeholder), so their values must arrive
    /// in those types.
    fn typed(&self, params: ParamValues) -> PgWireResult<ParamValues> {
        let ParamValues::List(mut values) = params else {
            return Ok(params);
        };
        for (i, v) in values.iter_mut().enumerate() {
            if let Some(Some(t)) = self.placed.get(&format!("${}", i + 1)) {
                if v.value.data_type() != *t {
                    v.value = v.value.cast_to(t).map_err(api)?;
                }
            }
        }
        Ok(ParamValues::List(values))
    }
}

/// The generic physical plan of a kept plan (see [`generic`]).
#[derive(Clone, Default)]
enum Generic {
    #[default]
    Untried,
    Plan(Arc<GenericPlan>),
    /// None could be made: tried again after this many executions.
    Not(u32),
}

/// How many executions a statement without a generic plan runs before trying again (a
/// view it reads may have become resident since).
const RETRY_GENERIC: u32 = 64;

/// The physical plan of one execution and its task context.
type Execution = (Arc<dyn ExecutionPlan>, Arc<TaskContext>);

struct GenericPlan {
    plan: Arc<dyn ExecutionPlan>,
    /// The personal-data columns it reads, noted in the audit log at each execution.
    reads: BTreeSet<String>,
    /// The task context of its executions (made once: it copies the session's
    /// function registries, whose changes change the plan epoch).
    task: Arc<TaskContext>,
}

impl GenericPlan {
    /// The plan of one execution with `values` and its task context; `None` when a
    /// view it reads was refreshed since it was made.
    fn bind(&self, values: &[ScalarValue]) -> PgWireResult<Option<Execution>> {
        let options = self.task.session_config().options();
        let Some(plan) = generic::bind_plan(&self.plan, values, options).map_err(api)? else {
            return Ok(None);
        };
        crate::access::audit::note_reads(&self.reads);
        Ok(Some((plan, self.task.clone())))
    }
}

type Entries = Mutex<HashMap<String, Vec<Arc<Kept>>>>;

/// Optimised plans of read statements, shared by all sessions.
pub struct Plans {
    kept: Arc<Entries>,
    /// Drops the generic plans when resident rows are let go (they hold them).
    _holder: generic::Holder,
}

impl Default for Plans {
    fn default() -> Self {
        let kept: Arc<Entries> = Arc::default();
        let entries = Arc::downgrade(&kept);
        let holder: generic::Holder = Arc::new(move || {
            let Some(entries) = entries.upgrade() else {
                return;
            };
            let entries = entries.lock().unwrap_or_else(|e| e.into_inner());
            for kept in entries.values().flatten() {
                *kept.generic.lock().unwrap_or_else(|e| e.into_inner()) = Generic::Untried;
            }
        });
        generic::on_release(&holder);
        Plans {
            kept,
            _holder: holder,
        }
    }
}

fn api(e: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

impl Plans {
    /// The kept optimised plan of `plan` (the statement `sql`) for `principal`, if valid.
    fn get(
        &self,
        sql: &str,
        plan: &LogicalPlan,
        principal: &Principal,
        epoch: u64,
    ) -> Option<Arc<Kept>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(sql)?
            .iter()
            .find(|k| k.epoch == epoch && &k.principal == principal && &k.unplanned == plan)
            .cloned()
    }

    fn put(
        &self,
        sql: &str,
        plan: &LogicalPlan,
        principal: &Principal,
        epoch: u64,
        optimised: Arc<LogicalPlan>,
    ) -> Arc<Kept> {
        let made = Arc::new(Kept {
            unplanned: plan.clone(),
            principal: principal.clone(),
            epoch,
            placed: placed_types(&optimised),
            folds: folds(&optimised),
            optimised,
            generic: Mutex::default(),
        });
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_TEXTS && !kept.contains_key(sql) {
            kept.clear();
        }
        let entries = kept.entry(sql.to_string()).or_default();
        // Entries of an older epoch are stale for good.
        entries
            .retain(|k| k.epoch == epoch && !(&k.principal == principal && &k.unplanned == plan));
        entries.push(made.clone());
        made
    }

    /// Execute the read `plan` (Parse's plan of `sql`) of a bound portal.
    pub async fn run<C: ClientInfo + ?Sized>(
        &self,
        engine: &Engine,
        client: &C,
        portal: &Portal<Statement>,
        sql: &str,
        plan: &LogicalPlan,
        params: ParamValues,
    ) -> PgWireResult<Response> {
        // Read before planning: a change after this point makes the entry stale.
        let epoch = engine.plan_epoch();
        let principal = crate::access::current();
        let kept = self.get(sql, plan, &principal, epoch);
        let generic = match &kept {
            Some(kept) => run_generic(engine, kept, &params).await?,
            None => None,
        };
        let (physical, schema, task) = match (&kept, generic) {
            (Some(kept), Some((physical, task))) => {
                (physical, kept.optimised.schema().clone(), task)
            }
            _ => {
                let state = engine.session_context().state();
                let bound = match &kept {
                    Some(kept) => kept.bind(&state, params)?,
                    None if keepable(sql, plan) => match state.optimize(plan) {
                        Ok(optimised) => self
                            .put(sql, plan, &principal, epoch, Arc::new(optimised))
                            .bind(&state, params)?,
                        // Some plans only optimise with their values (a LIMIT $1, say).
                        Err(_) => optimise_bound(&state, plan, params)?,
                    },
                    None => optimise_bound(&state, plan, params)?,
                };
                let physical = state
                    .query_planner()
                    .create_physical_plan(&bound, &state)
                    .await
                    .map_err(api)?;
                (physical, bound.schema().clone(), state.task_ctx())
            }
        };
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(pg_fields(
            schema.as_arrow(),
            &portal.result_column_format,
            Some(options.clone()),
        )?);
        let batches = execute_stream(physical, task).map_err(api)?;
        Ok(Response::Query(super::rows::response(
            fields, options, batches,
        )))
    }
}

/// The physical plan (and task context) of one execution of `kept` with `params` from
/// its generic plan, made on first use; `None` when it has none (see [`generic`]).
async fn run_generic(
    engine: &Engine,
    kept: &Kept,
    params: &ParamValues,
) -> PgWireResult<Option<Execution>> {
    let ParamValues::List(values) = kept.typed(params.clone())? else {
        return Ok(None);
    };
    let values: Vec<ScalarValue> = values.iter().map(|v| v.value.clone()).collect();
    let current = kept
        .generic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match current {
        Generic::Plan(g) => {
            if let Some(plan) = g.bind(&values)? {
                return Ok(Some(plan));
            }
            // A view it reads was refreshed: plan it again.
        }
        Generic::Not(n) if n > 0 => {
            *kept.generic.lock().unwrap_or_else(|e| e.into_inner()) = Generic::Not(n - 1);
            return Ok(None);
        }
        Generic::Not(_) | Generic::Untried => {}
    }
    let state = engine.session_context().state();
    let Some(made) = plan_generic(&state, kept, &values).await else {
        *kept.generic.lock().unwrap_or_else(|e| e.into_inner()) = Generic::Not(RETRY_GENERIC);
        return Ok(None);
    };
    let execution = made.bind(&values)?;
    let mut slot = kept.generic.lock().unwrap_or_else(|e| e.into_inner());
    // Kept only while current, checked under the lock the release takes: a plan made
    // from rows let go meanwhile would hold them in memory.
    if execution.is_some() && generic::is_current(&made.plan) {
        *slot = Generic::Plan(Arc::new(made));
    }
    Ok(execution)
}

/// The generic physical plan of `kept`, planned with `values` as the hints of its
/// parameters, if it can serve every execution: its placeholders all typed and compared
/// as they are (nothing to fold), and every scan resident ([`generic::is_generic`]).
async fn plan_generic(
    state: &SessionState,
    kept: &Kept,
    values: &[ScalarValue],
) -> Option<GenericPlan> {
    if kept.folds {
        return None;
    }
    let mut typed = true;
    let with_params = kept
        .optimised
        .as_ref()
        .clone()
        .transform_up_with_subqueries(|node| {
            node.map_expressions(|e| {
                e.transform(|e| {
                    let Expr::Placeholder(p) = &e else {
                        return Ok(Transformed::no(e));
                    };
                    // `$1` is the first value.
                    let index =
                        p.id.strip_prefix('$')
                            .and_then(|n| n.parse::<usize>().ok()?.checked_sub(1));
                    let hint = index.and_then(|i| Some((i, values.get(i)?)));
                    match (hint, &p.field) {
                        (Some((i, hint)), Some(field))
                            if hint.data_type() == *field.data_type() =>
                        {
                            Ok(Transformed::yes(generic::param(i, hint.clone())))
                        }
                        _ => {
                            typed = false;
                            Ok(Transformed::no(e))
                        }
                    }
                })
            })
        })
        .ok()?
        .data;
    if !typed {
        return None;
    }
    let reads = crate::access::audit::Reads::default();
    let planned = crate::access::audit::collecting(
        reads.clone(),
        state
            .query_planner()
            .create_physical_plan(&with_params, state),
    )
    .await;
    let reads = std::mem::take(&mut *reads.lock().unwrap_or_else(|e| e.into_inner()));
    let plan = planned.ok().filter(generic::is_generic)?;
    Some(GenericPlan {
        plan,
        reads,
        task: state.task_ctx(),
    })
}

/// Whether an optimised `plan` may be reused for other values and later executions: not
/// when the optimiser folds the clock or the session into it (STABLE functions), and not
/// for catalog queries (their tables are re-published by DDL).
fn keepable(sql: &str, plan: &LogicalPlan) -> bool {
    if super::compat::reads_catalog(&sql.to_ascii_lowercase()) {
        return false;
    }
    let mut stable = false;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if f.func.signature().volatility == Volatility::Stable {
                        stable = true;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    !stable
}

/// Whether values bound into `plan` make constant expressions to fold: a placeholder
/// that is an argument of anything but a comparison or an `IN` list (`CAST($1 AS ...)`,
/// `$1 IS NULL`, `$1 + 1`). Folding runs an optimiser pass over the whole plan, a large
/// share of a lookup's planning, so it is skipped where values land as plain literals.
fn folds(plan: &LogicalPlan) -> bool {
    let mut folds = false;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let takes_literals = match e {
                    Expr::BinaryExpr(b) => matches!(
                        b.op,
                        Operator::Eq
                            | Operator::NotEq
                            | Operator::Lt
                            | Operator::LtEq
                            | Operator::Gt
                            | Operator::GtEq
                    ),
                    Expr::InList(_) | Expr::Placeholder(_) => true,
                    _ => false,
                };
                if !takes_literals {
                    let _ = e.apply_children(|child| {
                        if matches!(child, Expr::Placeholder(_)) {
                            folds = true;
                            return Ok(TreeNodeRecursion::Stop);
                        }
                        Ok(TreeNodeRecursion::Continue)
                    });
                }
                Ok(if folds {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        })
    });
    folds
}

/// The type each placeholder of `optimised` was given, by id; `None` for one placed
/// with two types (its value is left as it is).
fn placed_types(optimised: &LogicalPlan) -> HashMap<String, Option<DataType>> {
    let mut placed: HashMap<String, Option<DataType>> = HashMap::new();
    let _ = optimised.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::Placeholder(p) = e {
                    let t = p.field.as_ref().map(|f| f.data_type().clone());
                    placed
                        .entry(p.id.clone())
                        .and_modify(|seen| {
                            if *seen != t {
                                *seen = None
                            }
                        })
                        .or_insert(t);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    placed
}

/// Bind `params` into an unoptimised plan and optimise it (a plan that is not kept).
fn optimise_bound(
    state: &SessionState,
    plan: &LogicalPlan,
    params: ParamValues,
) -> PgWireResult<LogicalPlan> {
    let bound = plan
        .clone()
        .replace_params_with_values(&params)
        .map_err(api)?;
    state.optimize(&bound).map_err(api)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn plan(ctx: &SessionContext, sql: &str) -> LogicalPlan {
        ctx.state().create_logical_plan(sql).await.expect(sql)
    }

    #[tokio::test]
    async fn a_kept_plan_serves_its_text_plan_role_and_epoch_only() {
        let ctx = SessionContext::new();
        let sql = "SELECT $1 + 1 AS x";
        let p = plan(&ctx, sql).await;
        let other = plan(&ctx, "SELECT $1 + 2 AS x").await;
        let (alice, bob) = (Principal::system(), Principal::nobody());
        let plans = Plans::default();
        assert!(plans.get(sql, &p, &alice, 1).is_none());
        let optimised = Arc::new(ctx.state().optimize(&p).expect("optimise"));
        plans.put(sql, &p, &alice, 1, optimised.clone());
        let hit = plans.get(sql, &p, &alice, 1).expect("kept");
        assert!(Arc::ptr_eq(&hit.optimised, &optimised));
        assert!(plans.get(sql, &p, &bob, 1).is_none(), "another role");
        assert!(plans.get(sql, &p, &alice, 2).is_none(), "a later epoch");
        assert!(plans.get(sql, &other, &alice, 1).is_none(), "another plan");
        assert!(
            plans.get("SELECT 2", &p, &alice, 1).is_none(),
            "another text"
        );
        // A later epoch's entry replaces the stale ones of its text.
        plans.put(sql, &p, &bob, 2, optimised.clone());
        assert!(plans.get(sql, &p, &alice, 1).is_none());
        assert_eq!(plans.kept.lock().expect("lock")[sql].len(), 1);
    }

    #[tokio::test]
    async fn plans_reading_the_clock_the_session_or_the_catalog_are_not_kept() {
        let ctx = SessionContext::new();
        for (sql, keep) in [
            ("SELECT $1 + 1 AS x", true),
            ("SELECT random() + $1 AS x", true),
            ("SELECT now() AS t, $1 AS x", false),
            (
                "SELECT 1 AS x WHERE $1 > (SELECT to_unixtime(now()))",
                false,
            ),
        ] {
            assert_eq!(keepable(sql, &plan(&ctx, sql).await), keep, "{sql}");
        }
        assert!(!keepable(
            "SELECT relname FROM pg_catalog.pg_class",
            &plan(&ctx, "SELECT 1").await
        ));
    }

    #[tokio::test]
    async fn only_placeholders_inside_expressions_need_folding() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (id TEXT, n INT)")
            .await
            .expect("create")
            .collect()
            .await
            .expect("create");
        for (sql, folds_values) in [
            ("SELECT n FROM t WHERE id = $1", false),
            ("SELECT n FROM t WHERE id = $1 AND n < $2", false),
            ("SELECT n FROM t WHERE id IN ($1, $2)", false),
            ("SELECT n FROM t WHERE id = $1 AND $2 IS NOT NULL", true),
            ("SELECT n FROM t WHERE n = $1 + 1", true),
            ("SELECT n FROM t WHERE id = upper($1)", true),
        ] {
            let optimised = ctx.state().optimize(&plan(&ctx, sql).await).expect(sql);
            assert_eq!(folds(&optimised), folds_values, "{sql}");
        }
    }

    #[tokio::test]
    async fn binding_into_a_kept_plan_folds_the_values() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (id TEXT, n INT) AS VALUES ('a', 1), ('b', 2)")
            .await
            .expect("create")
            .collect()
            .await
            .expect("create");
        let p = plan(&ctx, "SELECT n FROM t WHERE id = $1 AND $2 IS NOT NULL").await;
        let state = ctx.state();
        let optimised = Arc::new(state.optimize(&p).expect("optimise"));
        let kept = Plans::default().put("q", &p, &Principal::system(), 1, optimised);
        assert!(kept.folds);
        let params = ParamValues::List(vec![
            datafusion::scalar::ScalarValue::Utf8(Some("b".into())).into(),
            datafusion::scalar::ScalarValue::Int64(Some(1)).into(),
        ]);
        let bound = kept.bind(&state, params).expect("bind");
        let text = bound.display_indent().to_string();
        assert!(!text.contains('$'), "{text}");
        assert!(!text.contains("IS NOT NULL"), "folded: {text}");
        let batches = ctx
            .execute_logical_plan(bound)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let out = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string();
        assert!(out.contains("| 2 |") && !out.contains("| 1 |"), "{out}");
    }
}
