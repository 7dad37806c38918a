//! The engine: one DataFusion `SessionContext` whose relations persist in the data
//! directory.
//!
//! - [`catalog`] keeps the list of relations on disk (atomically rewritten JSON);
//! - [`sql`] splits query strings and picks out the statements the engine runs itself
//!   ([`Command`]): DDL that must persist, DML that must commit to Delta, `COPY`;
//! - [`crate::storage`] holds managed tables (Delta Lake);
//! - [`matview`] runs materialised views (stored as Delta tables too) and their refreshes;
//! - everything else (queries, `SET`, `SHOW`, transactions) is planned by DataFusion
//!   directly, through the wire layer.
//!
//! DDL is serialised by one lock, so the catalog file, the session's registrations and the
//! table directories change together: the catalog is written before a change is made
//! visible, and a failed statement changes neither.

mod activation;
pub mod catalog;
pub mod compact_views;
pub mod copy;
mod count_distinct;
mod dml;
pub mod erasure;
pub mod error;
pub mod locations;
pub mod matview;
pub mod memory;
pub mod object_stores;
mod privacy;
pub mod source;
pub mod sql;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, TableReference};
use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ObjectType, Statement};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::storage::{ManagedTable, TextLimit};
use crate::system::SystemTables;
use catalog::{Catalog, Entry, RelationKind};
pub use error::{EngineError, Result};
pub use sql::Command;
use std::collections::BTreeMap;

/// The database (catalog) name clients connect to.
pub const DATABASE: &str = "tessera";
/// The schema user relations live in.
pub const SCHEMA: &str = "public";

/// What a statement did, for the command tag (`INSERT 0 3`, `CREATE TABLE`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub tag: &'static str,
    pub rows: Option<u64>,
}

impl Outcome {
    fn tag(tag: &'static str) -> Self {
        Outcome { tag, rows: None }
    }
    fn rows(tag: &'static str, rows: u64) -> Self {
        Outcome {
            tag,
            rows: Some(rows),
        }
    }
}

/// How much decoded Parquet metadata (footers and page indexes) the server keeps in
/// memory. A key lookup prunes to one page per column with the page index; decoding it
/// again on every query cost more than the lookup itself. DataFusion's default (50 MB)
/// holds the page indexes of only a few million-row tables.
const METADATA_CACHE_BYTES: usize = 512 << 20;

/// How the server limits what queries and sources may use (see [`locations`], [`memory`]).
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Roots external sources may read besides the data directory (`--allow-location`).
    pub allowed_locations: Vec<String>,
    /// The memory pool of queries in bytes (`None`: unlimited).
    pub memory_limit: Option<usize>,
}

pub struct Engine {
    ctx: Arc<SessionContext>,
    /// Where `CREATE EXTERNAL TABLE` may read (the data directory and `--allow-location`).
    allowed: locations::AllowedLocations,
    system: SystemTables,
    data_dir: PathBuf,
    catalog: Mutex<Catalog>,
    matviews: matview::Registry,
    collector: Arc<crate::collect::Collector>,
    /// Which columns hold personal data (read by the masking rule).
    classes: Arc<crate::access::Classification>,
    /// Who consented to what (`consent_allows`), from `consent_state`.
    consent: Arc<crate::access::consent::ConsentIndex>,
    roles: crate::auth::Roles,
    /// `tessera.audit_log`.
    audit: crate::access::audit::AuditLog,
    /// The identifiers of erased people (`forget_subject`), left out of every scan.
    suppression: Arc<crate::access::erasure::Suppression>,
    /// `tessera.erasure_receipts`.
    receipts: ManagedTable,
    /// The identity spaces (`resolve_identities`).
    identity: Arc<crate::identity::IdentityStore>,
    /// Held by the erasure running (one at a time).
    erasing: Mutex<()>,
    /// The segments' webhook destinations and their deliveries.
    activation: crate::activate::Activation,
    /// Changes whenever what a plan depends on may have changed (see [`Engine::plan_epoch`]).
    plan_epoch: std::sync::atomic::AtomicU64,
}

impl Engine {
    /// Open (or create) the data directory and rebuild every relation in its catalog.
    /// A relation that cannot be rebuilt (say, its source file is gone) is logged and
    /// kept in the catalog; the others are served.
    pub async fn open(data_dir: &Path) -> Result<Arc<Engine>> {
        Engine::open_with(data_dir, EngineOptions::default()).await
    }

    /// [`Engine::open`] with limits.
    pub async fn open_with(data_dir: &Path, options: EngineOptions) -> Result<Arc<Engine>> {
        std::fs::create_dir_all(data_dir.join("tables"))
            .map_err(|e| EngineError::io(data_dir, e))?;
        let data_dir = std::fs::canonicalize(data_dir).map_err(|e| EngineError::io(data_dir, e))?;
        // No transaction block outlives the server that ran it.
        crate::storage::txn::clear_stale(&data_dir.join("tables"));
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE, SCHEMA)
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(true);
        // PostgreSQL's grammar and operator precedence (`traits ->> 'email' = 'x'`).
        config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
        // PostgreSQL's session time zone (UTC here): `timestamptz` and `now()` are
        // instants in it, not local times (DataFusion's default has no zone).
        config.options_mut().execution.time_zone = Some("UTC".into());
        // No cache of directory listings: DataFusion's keeps a directory's first listing
        // for the server's life, so a file added to a source's directory was never read.
        let mut runtime = RuntimeEnvBuilder::new()
            .with_metadata_cache_limit(METADATA_CACHE_BYTES)
            .with_object_list_cache_limit(0);
        if let Some(bytes) = options.memory_limit {
            runtime = runtime.with_memory_pool(memory::pool(bytes));
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime.build_arc()?)
            .with_default_features()
            .with_optimizer_rule(Arc::new(count_distinct::CountDistinctWithCounts))
            .with_physical_optimizer_rule(Arc::new(compact_views::CompactViews))
            .build();
        let ctx = Arc::new(SessionContext::new_with_state(state));
        let allowed =
            locations::AllowedLocations::new(&options.allowed_locations)?.with_dir(&data_dir)?;
        udfs::register_all(&ctx);
        let key = privacy::pseudonym_key(&data_dir)?;
        ctx.register_udf(privacy::pseudonymize_udf(key));
        let classes = Arc::new(crate::access::Classification::default());
        let consent = Arc::new(crate::access::consent::ConsentIndex::default());
        ctx.register_udf(crate::access::consent::ConsentAllows::udf(consent.clone()));
        ctx.register_udtf(
            crate::access::subject::FUNCTION,
            Arc::new(crate::access::subject::SubjectAccess {
                ctx: Arc::downgrade(&ctx),
                classes: classes.clone(),
            }),
        );
        let system = SystemTables::register(&ctx)?;
        let suppression =
            Arc::new(crate::access::erasure::Suppression::open(&ctx, &data_dir, key).await?);
        ctx.add_analyzer_rule(Arc::new(crate::access::mask::GuardRelations::new(
            classes.clone(),
            suppression.clone(),
        )));
        let receipts = erasure::open_receipts(&ctx, &data_dir).await?;
        let roles = crate::auth::Roles::open(&ctx, &data_dir)?;
        let identity = crate::identity::IdentityStore::open(&ctx, &data_dir)?;
        let matviews = matview::Registry::new(&ctx, &data_dir).await?;
        let collector =
            Arc::new(crate::collect::Collector::open(&ctx, &data_dir, suppression.clone()).await?);
        let audit =
            crate::access::audit::AuditLog::open(&ctx, &data_dir, suppression.clone()).await?;
        let activation = crate::activate::Activation::open(&ctx, &data_dir, key).await?;
        crate::pg::setup(&ctx, roles.clone()).await?;
        let catalog = Catalog::load(&data_dir)?;
        let engine = Engine {
            ctx,
            allowed,
            system,
            data_dir,
            catalog: Mutex::new(catalog),
            matviews,
            collector,
            classes,
            consent,
            audit,
            roles,
            suppression,
            receipts,
            identity,
            erasing: Mutex::new(()),
            activation,
            plan_epoch: Default::default(),
        };
        engine.restore().await;
        Ok(Arc::new(engine))
    }

    pub fn session_context(&self) -> Arc<SessionContext> {
        self.ctx.clone()
    }

    /// A number that changes after every statement that may change how a query is
    /// analysed and optimised: DDL, grants and roles, personal-data classes, erasures,
    /// settings. A plan kept for reuse (prepared statements) is valid while it stays
    /// the same; read it before planning.
    pub fn plan_epoch(&self) -> u64 {
        self.plan_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Make every kept plan stale (call after the change, not before).
    pub fn invalidate_plans(&self) {
        self.plan_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where external sources may read from.
    pub fn allowed_locations(&self) -> &locations::AllowedLocations {
        &self.allowed
    }

    /// The write keys and event store of the HTTP collection API.
    pub fn collector(&self) -> &Arc<crate::collect::Collector> {
        &self.collector
    }

    /// `tessera.audit_log`.
    pub fn audit(&self) -> &crate::access::audit::AuditLog {
        &self.audit
    }

    /// The roles: who may log in, and what each may see.
    pub fn roles(&self) -> &crate::auth::Roles {
        &self.roles
    }

    async fn restore(&self) {
        let catalog = self.catalog.lock().await;
        // Catalog order is creation order, but CREATE OR REPLACE VIEW keeps a view's
        // place while letting it read relations created later: retry what fails until
        // a round makes no progress.
        let mut pending: Vec<&Entry> = catalog.entries().iter().collect();
        loop {
            let mut failed = Vec::new();
            for entry in &pending {
                match self.register(entry).await {
                    Ok(()) => info!(relation = %entry.name, kind = ?entry.kind, "restored"),
                    Err(e) => failed.push((*entry, e)),
                }
            }
            if failed.is_empty() || failed.len() == pending.len() {
                for (entry, e) in failed {
                    warn!(relation = %entry.name, "cannot restore relation: {e}");
                }
                break;
            }
            pending = failed.into_iter().map(|(e, _)| e).collect();
        }
        self.publish_catalog(&catalog).await;
        self.publish_materialized_views(&catalog);
        drop(catalog);
        self.reclassify().await;
        self.reload_consent().await;
    }

    /// Refresh the system tables that describe the catalog: `tessera.view_dependencies`,
    /// `tessera.view_definitions` and `tessera.primary_keys`.
    async fn publish_catalog(&self, catalog: &Catalog) {
        let mut dependencies = Vec::new();
        let mut definitions = Vec::new();
        let mut keys = Vec::new();
        let mut column_types = Vec::new();
        for e in catalog.entries() {
            column_types.extend(self.column_types(e).await);
            if !e.primary_key.is_empty() {
                if let Some(columns) = self.key_columns(&e.name, &e.primary_key).await {
                    keys.push((e.name.clone(), columns));
                }
            }
            if !e.kind.is_view() {
                continue;
            }
            let Ok(DFStatement::Statement(stmt)) = sql::parse_one(&e.sql) else {
                continue;
            };
            if let Statement::CreateView(v) = stmt.as_ref() {
                if e.kind == RelationKind::View {
                    definitions.push((e.name.clone(), v.query.to_string()));
                }
            }
            let mut refs: Vec<String> = sql::referenced_relations(&stmt)
                .into_iter()
                .filter(|r| *r != e.name)
                .collect();
            refs.sort();
            refs.dedup();
            dependencies.extend(refs.into_iter().map(|r| (e.name.clone(), r)));
        }
        let published = self
            .system
            .set_view_dependencies(&dependencies)
            .and_then(|()| self.system.set_view_definitions(&definitions))
            .and_then(|()| self.system.set_primary_keys(&keys))
            .and_then(|()| self.system.set_column_types(&column_types));
        if let Err(e) = published {
            warn!("cannot publish the catalog's system tables: {e}");
        }
    }

    /// (relation, column, type oid, type modifier) of each column of `e` whose
    /// PostgreSQL type its Arrow type does not tell: a declared `varchar(n)`/`char(n)`,
    /// and a decimal's precision and scale (`numeric(10,2)`, modifier `(p << 16 | s) + 4`).
    async fn column_types(&self, e: &Entry) -> Vec<(String, String, i32, i32)> {
        let Ok(provider) = self.ctx.table_provider(bare(&e.name)).await else {
            return vec![];
        };
        let row = |column: &str, (oid, typmod): (i32, i32)| {
            (e.name.clone(), column.to_string(), oid, typmod)
        };
        provider
            .schema()
            .fields()
            .iter()
            .filter_map(|f| match (e.text_limits.get(f.name()), f.data_type()) {
                (Some(limit), _) => Some(row(f.name(), limit.pg_type())),
                (None, datafusion::arrow::datatypes::DataType::Decimal128(p, s)) if *s >= 0 => {
                    Some(row(
                        f.name(),
                        (1700, ((i32::from(*p) << 16) | i32::from(*s)) + 4),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    /// The columns of `table`'s primary key with their column numbers (1-based, as
    /// `pg_attribute.attnum`), or `None` if the table or a column is not registered.
    async fn key_columns(&self, table: &str, key: &[String]) -> Option<Vec<(String, usize)>> {
        let provider = self.ctx.table_provider(bare(table)).await.ok()?;
        let schema = provider.schema();
        key.iter()
            .map(|c| schema.index_of(c).ok().map(|i| (c.clone(), i + 1)))
            .collect()
    }

    /// Make a catalog entry visible in the session context.
    async fn register(&self, entry: &Entry) -> Result<()> {
        match entry.kind {
            RelationKind::External => {
                let DFStatement::CreateExternalTable(mut cet) = sql::parse_one(&entry.sql)? else {
                    return Err(EngineError::Syntax(format!(
                        "bad definition of \"{}\"",
                        entry.name
                    )));
                };
                cet.name = object_name(&entry.name);
                cet.if_not_exists = false;
                cet.or_replace = true;
                // Defined before the roots were (or under other roots): served as it
                // is, so an upgrade does not lose sources, but said.
                for l in &cet.locations {
                    if let Err(e) = self.allowed.check(l) {
                        warn!(relation = %entry.name, "source kept from the catalog although {e}");
                    }
                }
                for l in &cet.locations {
                    object_stores::register_for(&self.ctx, l)?;
                }
                let location = cet.locations.join(", ");
                let plan = self
                    .ctx
                    .state()
                    .statement_to_plan(DFStatement::CreateExternalTable(cet))
                    .await?;
                self.ctx.execute_logical_plan(plan).await?;
                self.wrap_source(&entry.name, &location)?;
            }
            RelationKind::View => {
                self.ctx.sql(&entry.sql).await?;
                self.bound_view(&entry.name)?;
            }
            RelationKind::Table => {
                let location = entry.location.as_deref().unwrap_or_default();
                let table = ManagedTable::open(&entry.name, &self.data_dir.join(location))
                    .await?
                    .with_limits(&entry.text_limits)?;
                self.ctx
                    .register_table(bare(&entry.name), Arc::new(table))?;
            }
            RelationKind::MaterializedView => self.restore_materialized_view(entry).await?,
        }
        Ok(())
    }

    /// Replace the view DataFusion registered by one whose inlined plan keeps its name,
    /// so that SELECT on it can be checked (see `crate::access::view`).
    fn bound_view(&self, name: &str) -> Result<()> {
        if let Some(view) = self.ctx.deregister_table(bare(name))? {
            let bounded = crate::access::view::BoundedView::new(name, view);
            self.ctx.register_table(bare(name), Arc::new(bounded))?;
        }
        Ok(())
    }

    /// Replace the table DataFusion registered for an external source by its
    /// read-only [`source::SourceTable`] wrapper.
    fn wrap_source(&self, name: &str, location: &str) -> Result<()> {
        if let Some(table) = self.ctx.deregister_table(bare(name))? {
            let wrapped = source::SourceTable::new(table, name, location);
            self.ctx.register_table(bare(name), Arc::new(wrapped))?;
        }
        Ok(())
    }

    /// Run a [`Command`] other than `COPY` (which needs the protocol: see [`copy`]) as
    /// the server itself (model scripts): role statements are not checked.
    pub async fn execute(&self, command: Command) -> Result<Outcome> {
        self.execute_as(command, None).await
    }

    /// Run a [`Command`] for the session of role `user` (`None`: the server itself).
    /// Only role statements depend on who runs them (superusers only).
    pub async fn execute_as(&self, command: Command, user: Option<&str>) -> Result<Outcome> {
        let ddl = matches!(
            command,
            Command::CreateView(_)
                | Command::CreateTable(_)
                | Command::CreateMaterializedView(_)
                | Command::Drop { .. }
                | Command::Rename { .. }
        );
        let renamed = match &command {
            Command::Rename { name, new_name, .. } => Some((name.clone(), new_name.clone())),
            _ => None,
        };
        let dropped = matches!(command, Command::Drop { .. });
        let outcome = match command {
            Command::Role(c) => self.execute_role(*c, user),
            Command::ForgetSubject { id_type, id_value } if user.is_some() => self
                .forget_subject(&id_type, &id_value, user.unwrap_or_default())
                .await
                .map(|_| Outcome::tag("CALL")),
            other => self.execute_command(other).await,
        };
        // Grants follow a renamed relation and go with a dropped one.
        if outcome.is_ok() {
            if let Some((old, new)) = renamed {
                self.roles.rename_relation(&old, &new)?;
            }
            if dropped {
                self.roles
                    .prune_relations(&|r| self.ctx.table_exist(r).unwrap_or(true))?;
            }
        }
        if ddl {
            let catalog = self.catalog.lock().await;
            self.publish_catalog(&catalog).await;
            self.publish_materialized_views(&catalog);
            drop(catalog);
            self.reclassify().await;
        }
        self.invalidate_plans();
        outcome
    }

    async fn execute_command(&self, command: Command) -> Result<Outcome> {
        match command {
            Command::CreateExternal(cet) => self.create_external(*cet).await,
            Command::CreateTable(stmt) => self.create_table(*stmt).await,
            Command::CreateView(stmt) => self.create_view(*stmt).await,
            Command::CreateMaterializedView(c) => self.create_materialized_view(*c).await,
            Command::RefreshMaterializedView { name, with_data } => self
                .refresh_materialized_view(&name, with_data)
                .await
                .map(|_| Outcome::tag("REFRESH MATERIALIZED VIEW")),
            Command::Drop {
                kind,
                names,
                if_exists,
                cascade,
            } => self.drop_relations(kind, names, if_exists, cascade).await,
            Command::Rename {
                kind,
                name,
                new_name,
                if_exists,
            } => self.rename(kind, &name, &new_name, if_exists).await,
            Command::Dml(stmt) => {
                let tag = dml_tag(&stmt);
                let plan = self
                    .ctx
                    .state()
                    .statement_to_plan(DFStatement::Statement(stmt))
                    .await?;
                self.execute_dml(plan, tag).await
            }
            Command::Copy(_) => Err(EngineError::NotSupported(
                "COPY outside the wire protocol".into(),
            )),
            Command::CommentOnColumn {
                relation,
                column,
                comment,
            } => self.comment_on_column(&relation, &column, comment).await,
            Command::Discard => Ok(Outcome::tag("DISCARD ALL")),
            Command::Accept(tag) => Ok(Outcome::tag(tag)),
            // The key is only shown by the wire layer, which answers it as a row.
            Command::CreateWriteKey { name, source } => self
                .collector
                .keys()
                .create(&name, &source)
                .map(|_| Outcome::tag("CREATE WRITE KEY")),
            Command::DropWriteKey { name, if_exists } => self
                .collector
                .keys()
                .drop_key(&name, if_exists)
                .map(|_| Outcome::tag("DROP WRITE KEY")),
            // The secret is only shown by the wire layer, which answers it as a row.
            Command::CreateDestination(new) => self
                .create_destination(new)
                .await
                .map(|_| Outcome::tag("CREATE DESTINATION")),
            Command::DropDestination { name, if_exists } => self
                .drop_destination(&name, if_exists)
                .map(|_| Outcome::tag("DROP DESTINATION")),
            Command::Role(c) => self.execute_role(*c, None),
            Command::ForgetSubject { id_type, id_value } => self
                .forget_subject(
                    &id_type,
                    &id_value,
                    crate::access::Principal::system().name.as_str(),
                )
                .await
                .map(|_| Outcome::tag("CALL")),
            Command::Show(_) | Command::Transaction(_) | Command::SetPurpose(_) => Err(
                EngineError::NotSupported("session statements outside the wire protocol".into()),
            ),
        }
    }

    fn execute_role(
        &self,
        command: crate::auth::RoleCommand,
        user: Option<&str>,
    ) -> Result<Outcome> {
        let resolve = |name: &datafusion::sql::sqlparser::ast::ObjectName, must_exist: bool| {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident())
                .map(sql::ident_name)
                .collect();
            let reference = match parts.as_slice() {
                [t] => TableReference::bare(t.as_str()),
                [s, t] => TableReference::partial(s.as_str(), t.as_str()),
                [c, s, t] => TableReference::full(c.as_str(), s.as_str(), t.as_str()),
                _ => return Err(EngineError::Syntax(format!("bad relation name {name}"))),
            };
            let exists = self.ctx.table_exist(reference.clone()).unwrap_or(false);
            if must_exist && !exists {
                return Err(EngineError::UndefinedRelation(reference.to_string()));
            }
            Ok(match reference.schema() {
                Some(s) if s != SCHEMA => format!("{s}.{}", reference.table()),
                _ => reference.table().to_string(),
            })
        };
        let tag = self.roles.execute(command, user, &resolve)?;
        Ok(Outcome::tag(tag))
    }

    /// Run a script of statements (the demo model, tests): commands through
    /// [`Engine::execute`], everything else through DataFusion, results discarded.
    /// Scripts are the engine's own work (the model it applies), run with every privilege.
    pub async fn run_script(&self, script: &str) -> Result<Vec<Outcome>> {
        crate::access::as_system(self.run_script_inner(script)).await
    }

    async fn run_script_inner(&self, script: &str) -> Result<Vec<Outcome>> {
        let mut out = Vec::new();
        for stmt in sql::split_statements(script) {
            let command = match sql::classify(stmt) {
                Err(EngineError::Syntax(e)) => {
                    sql::classify_alter_view(stmt).ok_or(EngineError::Syntax(e))?
                }
                other => match other? {
                    Some(c) => c,
                    None => {
                        let batches = self.ctx.sql(stmt).await?.collect().await?;
                        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
                        out.push(Outcome::rows("SELECT", rows));
                        continue;
                    }
                },
            };
            out.push(self.execute(command).await?);
        }
        Ok(out)
    }

    /// Execute a planned INSERT/UPDATE/DELETE/TRUNCATE and report its row count.
    pub async fn execute_dml(&self, plan: LogicalPlan, tag: &'static str) -> Result<Outcome> {
        // A statement prepared before its table was dropped (and perhaps created again)
        // still holds the old table: writing through it would land in a dropped directory.
        if let LogicalPlan::Dml(d) = &plan {
            let planned = datafusion::datasource::source_as_provider(&d.target)?;
            let current = self
                .ctx
                .table_provider(d.table_name.clone())
                .await
                .map_err(|_| EngineError::UndefinedRelation(d.table_name.table().to_string()))?;
            if Arc::as_ptr(&planned) as *const () != Arc::as_ptr(&current) as *const () {
                return Err(EngineError::NotSupported(format!(
                    "writing to \"{}\" through a statement prepared before the table was dropped or replaced (prepare it again)",
                    d.table_name.table()
                )));
            }
        }
        let optimized = self.ctx.state().optimize(&plan)?;
        if dml::check(&optimized)? == dml::DmlCheck::NoRows {
            return Ok(Outcome::rows(tag, 0));
        }
        let batches = self
            .ctx
            .execute_logical_plan(optimized)
            .await?
            .collect()
            .await?;
        let rows = count_of(&batches);
        Ok(if tag == "TRUNCATE TABLE" {
            Outcome::tag(tag) // PostgreSQL reports no count for TRUNCATE
        } else {
            Outcome::rows(tag, rows)
        })
    }

    async fn create_external(
        &self,
        mut cet: datafusion::sql::parser::CreateExternalTable,
    ) -> Result<Outcome> {
        let name = sql::relation_name(&cet.name);
        let mut catalog = self.catalog.lock().await;
        if self.exists_or_replace(
            &catalog,
            &name,
            cet.if_not_exists,
            cet.or_replace,
            RelationKind::External,
        )? {
            return Ok(Outcome::tag("CREATE TABLE"));
        }
        cet.locations = cet
            .locations
            .iter()
            .map(|l| absolute_location(l))
            .collect::<Result<_>>()?;
        for l in &cet.locations {
            self.allowed.check(l)?;
        }
        cet.name = object_name(&name);
        let entry = Entry {
            name: name.clone(),
            kind: RelationKind::External,
            sql: external_definition(&cet),
            location: None,
            primary_key: vec![],
            refresh: None,
            comments: Default::default(),
            text_limits: Default::default(),
        };
        // Register first: this validates the location and infers the schema.
        for l in &cet.locations {
            object_stores::register_for(&self.ctx, l)?;
        }
        let location = cet.locations.join(", ");
        // OR REPLACE drops the old table before building the new one: keep it to put
        // back if the new definition fails.
        let previous = self.ctx.table_provider(bare(&name)).await.ok();
        let registered = async {
            let plan = self
                .ctx
                .state()
                .statement_to_plan(DFStatement::CreateExternalTable(cet))
                .await?;
            self.ctx.execute_logical_plan(plan).await
        };
        if let Err(source) = registered.await {
            if let Some(p) = previous {
                self.ctx.deregister_table(bare(&name))?;
                self.ctx.register_table(bare(&name), p)?;
            }
            return Err(EngineError::Source {
                name: name.clone(),
                location: location.clone(),
                source,
            });
        }
        self.wrap_source(&name, &location)?;
        if let Err(e) = catalog.update(|entries| upsert(entries, entry)) {
            self.ctx.deregister_table(bare(&name))?;
            return Err(e);
        }
        Ok(Outcome::tag("CREATE TABLE"))
    }

    async fn create_table(&self, stmt: Statement) -> Result<Outcome> {
        let declared_lengths = match &stmt {
            Statement::CreateTable(c) => sql::text_limits(&c.columns),
            _ => vec![],
        };
        let plan = self
            .ctx
            .state()
            .statement_to_plan(DFStatement::Statement(Box::new(stmt)))
            .await?;
        let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(cmt)) = plan else {
            return Err(EngineError::NotSupported(
                "this form of CREATE TABLE".into(),
            ));
        };
        if cmt.temporary {
            return Err(EngineError::NotSupported("CREATE TEMPORARY TABLE".into()));
        }
        let name = cmt.name.table().to_string();
        let is_ctas = !matches!(cmt.input.as_ref(), LogicalPlan::EmptyRelation(_));
        let mut catalog = self.catalog.lock().await;
        if self.exists_or_replace(
            &catalog,
            &name,
            cmt.if_not_exists,
            cmt.or_replace,
            RelationKind::Table,
        )? {
            return Ok(Outcome::tag("CREATE TABLE"));
        }
        let batches: Vec<RecordBatch> = if is_ctas {
            self.ctx
                .execute_logical_plan((*cmt.input).clone())
                .await?
                .collect()
                .await?
        } else {
            vec![]
        };
        if !cmt.column_defaults.is_empty() {
            return Err(EngineError::NotSupported(
                "DEFAULT values for columns".into(),
            ));
        }
        let declared = cmt.input.schema().inner().clone();
        // Columns of CREATE TABLE keep their NOT NULL; those of CREATE TABLE AS are
        // nullable, as in PostgreSQL (a query's literal columns are not constraints).
        let schema = if is_ctas {
            let fields: Vec<_> = declared
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
            Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
        } else {
            declared
        };
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let location = format!("tables/{name}-{}", unique_suffix());
        let dir = self.data_dir.join(&location);
        let primary_key = primary_key_columns(&cmt.constraints, &schema);
        // A primary key's columns are NOT NULL, as in PostgreSQL.
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| {
                    let key = primary_key.contains(f.name());
                    f.as_ref().clone().with_nullable(f.is_nullable() && !key)
                })
                .collect::<Vec<_>>(),
        ));
        // Declared in the order of the table's columns.
        let text_limits: BTreeMap<String, TextLimit> = declared_lengths
            .into_iter()
            .filter_map(|(i, limit)| Some((schema.fields().get(i)?.name().clone(), limit)))
            .collect();
        let created = async {
            let table = ManagedTable::create(&name, &dir, schema)
                .await?
                .with_limits(&text_limits)?;
            table.append(batches).await?;
            Ok::<_, EngineError>(table)
        }
        .await;
        let table = match created {
            // The primary key is recorded, not enforced, so DataFusion must not rely on
            // it (it would drop a DISTINCT over duplicate keys).
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let entry = Entry {
            name: name.clone(),
            kind: RelationKind::Table,
            sql: String::new(),
            location: Some(location),
            primary_key,
            refresh: None,
            comments: Default::default(),
            text_limits,
        };
        if let Err(e) = catalog.update(|entries| upsert(entries, entry)) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.ctx.register_table(bare(&name), Arc::new(table))?;
        Ok(if is_ctas {
            Outcome::rows("SELECT", rows as u64)
        } else {
            Outcome::tag("CREATE TABLE")
        })
    }

    async fn create_view(&self, stmt: Statement) -> Result<Outcome> {
        let Statement::CreateView(ref v) = stmt else {
            return Err(EngineError::NotSupported("this form of CREATE VIEW".into()));
        };
        let name = sql::relation_name(&v.name);
        let (if_not_exists, or_replace) = (v.if_not_exists, v.or_replace);
        let mut catalog = self.catalog.lock().await;
        if let Some(existing) = catalog.get(&name) {
            if if_not_exists {
                return Ok(Outcome::tag("CREATE VIEW"));
            }
            if !or_replace || existing.kind != RelationKind::View {
                return Err(EngineError::DuplicateRelation(name));
            }
        }
        let entry = Entry {
            name: name.clone(),
            kind: RelationKind::View,
            sql: stmt.to_string(),
            location: None,
            primary_key: vec![],
            refresh: None,
            comments: Default::default(),
            text_limits: Default::default(),
        };
        // Planning the view checks that everything it reads exists (42P01 otherwise).
        let previous = self.ctx.table_provider(bare(&name)).await.ok();
        self.ctx.sql(&entry.sql).await?;
        self.bound_view(&name)?;
        // A view's plan holds the plans of the views it reads, so the views that read a
        // replaced one are planned again (in creation order, which puts a view after
        // those it reads); if one no longer plans, nothing changes.
        let mut replanned = vec![(name.clone(), previous)];
        let result = if replanned[0].1.is_some() {
            self.replan_dependents(&catalog, &name, &mut replanned)
                .await
        } else {
            Ok(())
        };
        let result = result.and_then(|()| catalog.update(|entries| upsert(entries, entry)));
        if let Err(e) = result {
            for (n, p) in replanned.into_iter().rev() {
                self.ctx.deregister_table(bare(&n))?;
                if let Some(p) = p {
                    self.ctx.register_table(bare(&n), p)?;
                }
            }
            return Err(e);
        }
        Ok(Outcome::tag("CREATE VIEW"))
    }

    /// Plan again every plain view that reads `name`, directly or through other views,
    /// pushing each with its previous table onto `replanned`.
    async fn replan_dependents(
        &self,
        catalog: &Catalog,
        name: &str,
        replanned: &mut Vec<(String, Option<Arc<dyn TableProvider>>)>,
    ) -> Result<()> {
        let mut affected = vec![name.to_string()];
        let mut i = 0;
        while i < affected.len() {
            for dep in dependents(catalog, &affected[i]) {
                if !affected.contains(&dep) {
                    affected.push(dep);
                }
            }
            i += 1;
        }
        for e in catalog.entries() {
            if e.kind != RelationKind::View || e.name == name || !affected.contains(&e.name) {
                continue;
            }
            let previous = self.ctx.deregister_table(bare(&e.name))?;
            replanned.push((e.name.clone(), previous));
            self.ctx.sql(&e.sql).await.map_err(|err| {
                EngineError::DataFusion(DataFusionError::Context(
                    format!(
                        "cannot replace view \"{name}\": view \"{}\" depends on it",
                        e.name
                    ),
                    Box::new(err),
                ))
            })?;
            self.bound_view(&e.name)?;
        }
        Ok(())
    }

    /// Handle IF NOT EXISTS / OR REPLACE for a name about to be created. Returns true
    /// when the statement is already satisfied (IF NOT EXISTS on an existing name).
    fn exists_or_replace(
        &self,
        catalog: &Catalog,
        name: &str,
        if_not_exists: bool,
        or_replace: bool,
        kind: RelationKind,
    ) -> Result<bool> {
        match catalog.get(name) {
            None if self.ctx.table_exist(bare(name)).unwrap_or(false) => {
                // A built-in relation (information_schema etc. live elsewhere; this is a
                // name registered outside the catalog).
                Err(EngineError::DuplicateRelation(name.to_string()))
            }
            None => Ok(false),
            Some(_) if if_not_exists => Ok(true),
            Some(e) if or_replace && e.kind == kind && kind != RelationKind::Table => Ok(false),
            Some(_) => Err(EngineError::DuplicateRelation(name.to_string())),
        }
    }

    async fn drop_relations(
        &self,
        kind: ObjectType,
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    ) -> Result<Outcome> {
        let (tag, wanted) = match kind {
            ObjectType::View => ("DROP VIEW", RelationKind::View),
            ObjectType::MaterializedView => {
                ("DROP MATERIALIZED VIEW", RelationKind::MaterializedView)
            }
            _ => ("DROP TABLE", RelationKind::Table),
        };
        let mut catalog = self.catalog.lock().await;
        let mut doomed: Vec<String> = Vec::new();
        for name in &names {
            match catalog.get(name) {
                None if if_exists => continue,
                None => return Err(EngineError::UndefinedRelation(name.clone())),
                Some(e) if e.kind.keyword() != wanted.keyword() => {
                    return Err(EngineError::WrongObjectType {
                        name: name.clone(),
                        expected: wanted.noun(),
                        actual: Some(e.kind),
                    })
                }
                Some(_) => doomed.push(name.clone()),
            }
        }
        // Close over dependents: views that read a doomed relation.
        let mut i = 0;
        while i < doomed.len() {
            let target = doomed[i].clone();
            for dep in dependents(&catalog, &target) {
                if doomed.contains(&dep) {
                    continue;
                }
                if !cascade {
                    let noun = |n: &str| catalog.get(n).map_or("table", |e| e.kind.noun());
                    return Err(EngineError::DependentObjects {
                        kind: noun(&target),
                        dependents: vec![format!("{} {dep}", noun(&dep))],
                        name: target,
                    });
                }
                doomed.push(dep);
            }
            i += 1;
        }
        // Webhook destinations depend on their segments: they go first, so that a
        // failure never leaves a destination whose segment is gone.
        for name in self.destinations_of(&doomed, cascade)? {
            self.drop_destination(&name, true)?;
        }
        let removed: Vec<Entry> = doomed
            .iter()
            .filter_map(|n| catalog.get(n).cloned())
            .collect();
        catalog.update(|entries| {
            entries.retain(|e| !doomed.contains(&e.name));
            Ok(())
        })?;
        for entry in &removed {
            self.ctx.deregister_table(bare(&entry.name))?;
        }
        // A refresh in progress records its outcome under the catalog lock: let it go
        // before waiting for one to finish.
        drop(catalog);
        for entry in removed {
            if entry.kind == RelationKind::MaterializedView {
                self.forget_materialized_view(&entry.name).await;
            }
            if let Some(loc) = entry.location {
                let dir = self.data_dir.join(loc);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    warn!(
                        "dropped table \"{}\" but could not remove {}: {e}",
                        entry.name,
                        dir.display()
                    );
                }
            }
        }
        Ok(Outcome::tag(tag))
    }

    async fn rename(
        &self,
        kind: ObjectType,
        name: &str,
        new_name: &str,
        if_exists: bool,
    ) -> Result<Outcome> {
        let tag = if kind == ObjectType::View {
            "ALTER VIEW"
        } else {
            "ALTER TABLE"
        };
        let mut catalog = self.catalog.lock().await;
        let Some(entry) = catalog.get(name).cloned() else {
            return if if_exists {
                Ok(Outcome::tag(tag))
            } else {
                Err(EngineError::UndefinedRelation(name.to_string()))
            };
        };
        if entry.kind == RelationKind::MaterializedView {
            return Err(EngineError::NotSupported(format!(
                "renaming materialized view \"{name}\" (drop it and create it again)"
            )));
        }
        if catalog.get(new_name).is_some() || self.ctx.table_exist(bare(new_name)).unwrap_or(false)
        {
            return Err(EngineError::DuplicateRelation(new_name.to_string()));
        }
        // Views that read the relation follow it, as in PostgreSQL.
        let mut rewritten: Vec<Entry> = Vec::new();
        for dep in dependents(&catalog, name) {
            if let Some(e) = catalog.get(&dep) {
                let mut e = e.clone();
                if let DFStatement::Statement(mut s) = sql::parse_one(&e.sql)? {
                    sql::rename_references(&mut s, name, new_name);
                    // The view's own name must stay (it is not the renamed relation).
                    if let Statement::CreateView(ref mut v) = *s {
                        v.name = object_name(&e.name);
                        v.or_replace = !v.materialized;
                    }
                    e.sql = s.to_string();
                }
                rewritten.push(e);
            }
        }
        let mut renamed = entry.clone();
        renamed.name = new_name.to_string();
        if renamed.kind == RelationKind::View {
            if let DFStatement::Statement(mut s) = sql::parse_one(&renamed.sql)? {
                if let Statement::CreateView(ref mut v) = *s {
                    v.name = object_name(new_name);
                }
                renamed.sql = s.to_string();
            }
        }
        catalog.update(|entries| {
            for e in entries.iter_mut() {
                if e.name == name {
                    *e = renamed.clone();
                } else if let Some(r) = rewritten.iter().find(|r| r.name == e.name) {
                    *e = r.clone();
                }
            }
            Ok(())
        })?;
        let provider = self.ctx.deregister_table(bare(name))?;
        if renamed.kind == RelationKind::View {
            // Built again: its plan carries its name (see `bound_view`).
            self.register(&renamed).await?;
        } else if let Some(provider) = provider {
            self.ctx.register_table(bare(new_name), provider)?;
        }
        // A materialised view keeps its stored result; its next refresh reads the new name.
        for e in rewritten.iter().filter(|e| e.kind == RelationKind::View) {
            if let Err(err) = self.register(e).await {
                warn!(
                    "view \"{}\" could not be rebuilt after the rename: {err}",
                    e.name
                );
            }
        }
        Ok(Outcome::tag(tag))
    }

    /// The provider of a relation, or 42P01.
    pub async fn table(&self, name: &str) -> Result<Arc<dyn TableProvider>> {
        self.ctx
            .table_provider(bare(name))
            .await
            .map_err(|_| EngineError::UndefinedRelation(name.to_string()))
    }
}

/// Views and materialised views in the catalog that read `name`.
fn dependents(catalog: &Catalog, name: &str) -> Vec<String> {
    catalog
        .entries()
        .iter()
        .filter(|e| e.kind.is_view() && e.name != name)
        .filter(|e| match sql::parse_one(&e.sql) {
            Ok(DFStatement::Statement(s)) => {
                sql::referenced_relations(&s).iter().any(|r| r == name)
            }
            _ => false,
        })
        .map(|e| e.name.clone())
        .collect()
}

fn upsert(entries: &mut Vec<Entry>, entry: Entry) -> Result<()> {
    match entries.iter_mut().find(|e| e.name == entry.name) {
        Some(e) => *e = entry,
        None => entries.push(entry),
    }
    Ok(())
}

fn object_name(name: &str) -> datafusion::sql::sqlparser::ast::ObjectName {
    datafusion::sql::sqlparser::ast::ObjectName::from(vec![
        datafusion::sql::sqlparser::ast::Ident::with_quote('"', name),
    ])
}

fn bare(name: &str) -> TableReference {
    TableReference::bare(name.to_string())
}

fn dml_tag(stmt: &Statement) -> &'static str {
    match stmt {
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        _ => "TRUNCATE TABLE",
    }
}

/// The `count` a DML plan returns.
pub fn count_of(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter_map(|b| b.column_by_name("count"))
        .filter_map(|c| c.as_any().downcast_ref::<UInt64Array>())
        .flat_map(|a| a.iter().flatten())
        .sum()
}

fn primary_key_columns(
    constraints: &datafusion::common::Constraints,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Vec<String> {
    constraints
        .iter()
        .find_map(|c| match c {
            datafusion::common::Constraint::PrimaryKey(cols) => Some(
                cols.iter()
                    .filter_map(|i| schema.fields().get(*i).map(|f| f.name().clone()))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// Local paths are stored absolute, so a restart from another directory finds them.
fn absolute_location(location: &str) -> Result<String> {
    if location.contains("://") {
        return Ok(location.to_string());
    }
    let path = Path::new(location);
    if path.is_absolute() {
        return Ok(location.to_string());
    }
    let cwd = std::env::current_dir().map_err(|e| EngineError::io(Path::new("."), e))?;
    let mut abs = cwd.join(path).to_string_lossy().into_owned();
    if location.ends_with('/') && !abs.ends_with('/') {
        abs.push('/');
    }
    Ok(abs)
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}")
}

/// The text stored for an external table: DataFusion's `Display` drops the column list
/// and OPTIONS, so the definition is written out here in full.
fn external_definition(cet: &datafusion::sql::parser::CreateExternalTable) -> String {
    use std::fmt::Write;
    let mut s = format!("CREATE EXTERNAL TABLE {} ", cet.name);
    if !cet.columns.is_empty() {
        let cols: Vec<String> = cet.columns.iter().map(|c| c.to_string()).collect();
        let _ = write!(s, "({}) ", cols.join(", "));
    }
    let _ = write!(s, "STORED AS {} ", cet.file_type);
    if !cet.table_partition_cols.is_empty() {
        let _ = write!(
            s,
            "PARTITIONED BY ({}) ",
            cet.table_partition_cols.join(", ")
        );
    }
    let locs: Vec<String> = cet
        .locations
        .iter()
        .map(|l| format!("'{}'", l.replace('\'', "''")))
        .collect();
    if locs.len() == 1 {
        let _ = write!(s, "LOCATION {}", locs[0]);
    } else {
        let _ = write!(s, "LOCATION ({})", locs.join(", "));
    }
    if !cet.options.is_empty() {
        let opts: Vec<String> = cet
            .options
            .iter()
            .map(|(k, v)| format!("'{}' {v}", k.replace('\'', "''")))
            .collect();
        let _ = write!(s, " OPTIONS ({})", opts.join(", "));
    }
    s
}
