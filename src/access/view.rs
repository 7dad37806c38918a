//! Views keep their name in plans, so privileges can be checked on the view itself.
//!
//! DataFusion inlines a view's plan into every query that reads it, after which nothing
//! tells the view's relations from ones the query named. [`BoundedView`] wraps each
//! registered view so that its inlined plan sits under a [`ViewBoundary`] naming it. The
//! guard rule (`mask::GuardRelations`) checks SELECT on the view at the boundary and
//! not on what the view reads (the view's definer chose that, as in PostgreSQL), then
//! removes the boundary before anything else sees the plan.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchemaRef, Result};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, TableProviderFilterPushDown, TableType,
    UserDefinedLogicalNodeCore,
};
use datafusion::physical_plan::ExecutionPlan;

/// Marks where a view's inlined plan starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct ViewBoundary {
    pub view: String,
    pub input: LogicalPlan,
}

impl UserDefinedLogicalNodeCore for ViewBoundary {
    fn name(&self) -> &str {
        "ViewBoundary"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ViewBoundary: {}", self.view)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        Ok(ViewBoundary {
            view: self.view.clone(),
            input: inputs.swap_remove(0),
        })
    }
}

/// The boundary `plan` starts with, if it is one.
pub fn boundary(plan: &LogicalPlan) -> Option<&ViewBoundary> {
    match plan {
        LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<ViewBoundary>(),
        _ => None,
    }
}

/// A registered view whose inlined plan carries its name.
#[derive(Debug)]
pub struct BoundedView {
    name: String,
    inner: Arc<dyn TableProvider>,
}

impl BoundedView {
    pub fn new(name: &str, inner: Arc<dyn TableProvider>) -> Self {
        BoundedView {
            name: name.to_string(),
            inner,
        }
    }
}

#[async_trait]
impl TableProvider for BoundedView {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        let input = self.inner.get_logical_plan()?.into_owned();
        Some(Cow::Owned(LogicalPlan::Extension(Extension {
            node: Arc::new(ViewBoundary {
                view: self.name.clone(),
                input,
            }),
        })))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
}
