//! PostgreSQL compatibility of the session: `pg_catalog` (from datafusion-pg-catalog) and
//! the server functions clients call at connect time, answered as a PostgreSQL 16 server
//! would (`version()`, `current_setting()`), because clients such as SQLAlchemy parse them.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::ViewTable;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    create_udf, lit, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    context::{PgCatalogContextProvider, Role as CatalogRole},
    setup_pg_catalog,
};

mod functions;
mod types;

use crate::engine::{EngineError, DATABASE};

/// The PostgreSQL version tessera speaks as.
pub const SERVER_VERSION: &str = "16.6";
pub const SERVER_VERSION_NUM: &str = "160006";

pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (tessera {}) on {}-unknown-linux-gnu, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

/// Server settings readable with `current_setting(name)` and `SHOW`.
pub fn setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => SERVER_VERSION,
        "server_version_num" => SERVER_VERSION_NUM,
        "server_encoding" | "client_encoding" => "UTF8",
        "search_path" => "\"$user\", public",
        "standard_conforming_strings" => "on",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" => "UTC",
        "integer_datetimes" => "on",
        "max_identifier_length" => "63",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "off",
        "is_superuser" => "on",
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
        "application_name" => "",
        "lc_collate" | "lc_ctype" | "lc_messages" | "lc_monetary" | "lc_numeric" | "lc_time" => {
            "C.UTF-8"
        }
        "max_connections" => "200",
        "block_size" => "8192",
        "bytea_output" => "hex",
        "extra_float_digits" => "1",
        _ => return None,
    })
}

pub async fn setup(ctx: &SessionContext, roles: crate::auth::Roles) -> Result<(), EngineError> {
    setup_pg_catalog(ctx, DATABASE, RoleCatalog(roles)).map_err(|e| EngineError::DataFusion(*e))?;
    types::install(ctx);

    let version = version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version.clone(),
            ))))
        }),
    ));
    ctx.register_udf(create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(current_setting),
    ));
    ctx.register_udf(create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(set_config),
    ));
    ctx.register_udf(create_udf(
        "quote_literal",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(quote_literal),
    ));
    // `user` is PostgreSQL's other spelling of `current_user` (parsed as a function).
    for name in ["current_user", "session_user", "user"] {
        ctx.register_udf(ScalarUDF::from(SessionRole::new(name)));
    }
    functions::register(ctx).await?;
    install_overlay(ctx).await
}

/// What `pg_catalog.pg_roles` (and so psql's `\du`) lists: tessera's roles.
#[derive(Clone)]
struct RoleCatalog(crate::auth::Roles);

impl std::fmt::Debug for RoleCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoleCatalog")
    }
}

#[async_trait::async_trait]
impl PgCatalogContextProvider for RoleCatalog {
    async fn roles(&self) -> Vec<String> {
        self.0.names()
    }

    async fn role(&self, name: &str) -> Option<CatalogRole> {
        let role = self.0.get(name)?;
        Some(CatalogRole {
            name: role.name,
            is_superuser: role.superuser,
            can_login: role.login,
            // Creating databases or replicating is nobody's; roles are a superuser's.
            can_create_db: false,
            can_create_role: role.superuser,
            can_create_user: role.superuser,
            can_replication: false,
            grants: vec![],
            inherited_roles: role.member_of.into_iter().collect(),
        })
    }
}

/// `current_user`, `session_user` and `user`: the role the statement runs as (roles cannot be
/// switched within a session, so both are the role that logged in). Answered while the
/// statement is planned, which is when its principal is known (see `crate::access`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct SessionRole {
    name: &'static str,
    signature: Signature,
}

impl SessionRole {
    fn new(name: &'static str) -> Self {
        SessionRole {
            name,
            signature: Signature::nullary(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for SessionRole {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn simplify(
        &self,
        _args: Vec<Expr>,
        _info: &SimplifyContext,
    ) -> datafusion::error::Result<ExprSimplifyResult> {
        Ok(ExprSimplifyResult::Simplified(lit(crate::access::current(
        )
        .name)))
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            crate::access::current().name,
        ))))
    }
}

/// `quote_literal(text)`: the value as an SQL string literal (NULL stays NULL), with
/// PostgreSQL's `E'...'` form when it holds a backslash.
fn quote_literal(args: &[ColumnarValue]) -> datafusion::error::Result<ColumnarValue> {
    let quote = |v: &str| {
        let body = v.replace('\'', "''");
        if v.contains('\\') {
            format!("E'{}'", body.replace('\\', "\\\\"))
        } else {
            format!("'{body}'")
        }
    };
    match &args[0] {
        ColumnarValue::Scalar(s) => {
            let v = match s {
                ScalarValue::Utf8(v) | ScalarValue::Utf8View(v) | ScalarValue::LargeUtf8(v) => {
                    v.clone()
                }
                other if other.is_null() => None,
                other => Some(other.to_string()),
            };
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(
                v.as_deref().map(quote),
            )))
        }
        ColumnarValue::Array(a) => {
            let out: StringArray = as_string_array(a)?.iter().map(|v| v.map(quote)).collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }
    }
}

/// `current_setting(name)`: unknown names are an error, as in PostgreSQL.
fn current_setting(args: &[ColumnarValue]) -> datafusion::error::Result<ColumnarValue> {
    let lookup = |n: &str| {
        setting(n).ok_or_else(|| {
            DataFusionError::Execution(format!("unrecognized configuration parameter \"{n}\""))
        })
    };
    match &args[0] {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(v) | ScalarValue::Utf8View(v) | ScalarValue::LargeUtf8(v),
        ) => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(match v {
            Some(n) => Some(lookup(n)?.to_string()),
            None => None,
        }))),
        ColumnarValue::Array(a) => {
            let names = as_string_array(a)?;
            let out = names
                .iter()
                .map(|n| n.map(lookup).transpose())
                .collect::<datafusion::error::Result<StringArray>>()?;
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }
        other => Err(DataFusionError::Plan(format!(
            "current_setting expects a text argument, got {}",
            other.data_type()
        ))),
    }
}

/// `set_config(name, value, is_local)`: the settings `current_setting` reads are fixed
/// (a session changes its own with `SET`), so this answers `value` when it is already
/// the setting's value; an unknown name is 42704, as in PostgreSQL, and another value
/// 0A000.
fn set_config(args: &[ColumnarValue]) -> datafusion::error::Result<ColumnarValue> {
    let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let names = as_string_array(&arrays[0])?;
    let values = as_string_array(&arrays[1])?;
    let out = names
        .iter()
        .zip(values.iter())
        .map(|(name, value)| {
            let (Some(name), Some(value)) = (name, value) else {
                return Ok(None);
            };
            let current = setting(name).ok_or_else(|| {
                DataFusionError::Execution(format!(
                    "unrecognized configuration parameter \"{name}\""
                ))
            })?;
            if current.eq_ignore_ascii_case(value) {
                Ok(Some(value.to_string()))
            } else {
                Err(DataFusionError::NotImplemented(format!(
                    "set_config cannot change \"{name}\" from \"{current}\" to \"{value}\"; use SET"
                )))
            }
        })
        .collect::<datafusion::error::Result<StringArray>>()?;
    Ok(if scalar {
        ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
    } else {
        ColumnarValue::Array(Arc::new(out) as ArrayRef)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_config_answers_the_fixed_value_only() {
        let call = |name: &str, value: &str| {
            set_config(&[
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(name.into()))),
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(value.into()))),
                ColumnarValue::Scalar(ScalarValue::Boolean(Some(false))),
            ])
        };
        match call("TimeZone", "utc") {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(v)))) => assert_eq!(v, "utc"),
            other => panic!("{other:?}"),
        }
        let unknown = call("jit", "off").expect_err("unknown");
        assert!(
            unknown
                .to_string()
                .contains("unrecognized configuration parameter"),
            "{unknown}"
        );
        let other = call("timezone", "Europe/Berlin").expect_err("other value");
        assert!(
            matches!(other, DataFusionError::NotImplemented(_)),
            "{other}"
        );
    }

    #[test]
    fn version_parses_like_postgres() {
        // SQLAlchemy's regex: "PostgreSQL (\d+)\.?(\d+)?"
        let v = version_string();
        assert!(v.starts_with("PostgreSQL 16.6 "), "{v}");
        assert!(v.contains("tessera"));
    }

    #[test]
    fn quote_literal_escapes_like_postgres() {
        let q = |v: &str| match quote_literal(&[ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            v.into(),
        )))]) {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(s)))) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(q("it's"), "'it''s'");
        assert_eq!(q("a\\b"), "E'a\\\\b'");
    }

    #[test]
    fn known_and_unknown_settings() {
        assert_eq!(setting("server_version_num"), Some("160006"));
        assert_eq!(setting("TimeZone"), Some("UTC"));
        assert!(setting("no_such_thing").is_none());
    }
}

/// `pg_catalog` with some relations replaced by views over `pg_class`: datafusion-pg-catalog
/// lists views in `pg_tables` and leaves `pg_views` empty, which makes dbt take a view for
/// a table. `pg_class` itself is replaced by a view that gives materialised views relkind
/// `m` (psql's `\dm`) from `tessera.materialized_views`, which also fills `pg_matviews`.
#[derive(Debug)]
struct PgCatalogOverlay {
    base: Arc<dyn SchemaProvider>,
    views: HashMap<&'static str, Arc<dyn TableProvider>>,
}

/// `pg_matviews`, from `tessera.materialized_views`.
const PG_MATVIEWS: &str = "SELECT 'public' AS schemaname, m.name AS matviewname, \
     'tessera' AS matviewowner, CAST(NULL AS VARCHAR) AS tablespace, false AS hasindexes, \
     m.populated AS ispopulated, m.definition AS definition \
     FROM tessera.materialized_views m";

/// `pg_class` with relkind `m` and `relispopulated` for materialised views (which
/// datafusion-pg-catalog sees as tables): every column of the base table, in order, and
/// `reloptions` (NULL) after them.
fn pg_class_overlay(schema: &datafusion::arrow::datatypes::Schema) -> String {
    // datafusion-pg-catalog has no reloptions (SQLAlchemy's index reflection reads it):
    // no relation has storage options.
    let reloptions = (schema.index_of("reloptions").is_err())
        .then(|| "CAST(NULL AS VARCHAR[]) AS reloptions".to_string());
    let cols: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "relkind" => "CASE WHEN mv.name IS NULL THEN c.relkind ELSE 'm' END AS relkind".into(),
            "relispopulated" => "COALESCE(mv.populated, c.relispopulated) AS relispopulated".into(),
            name => format!("c.\"{name}\""),
        })
        .chain(reloptions.clone())
        .collect();
    // Each primary key's index (`<table>_pkey`, relkind `i`), which pg_index and
    // pg_constraint name by oid (pgjdbc's getPrimaryKeys joins it).
    let indexes = PK_INDEXES.replace("PRIMARY_KEYS", PRIMARY_KEYS);
    let index_cols: Vec<String> = cast_columns(schema, &provided_columns(PK_INDEXES))
        .into_iter()
        .chain(reloptions)
        .collect();
    format!(
        "SELECT {} FROM pg_catalog.pg_class c LEFT JOIN \
         (SELECT m.name, m.populated, n.oid AS nsp FROM tessera.materialized_views m \
          JOIN pg_catalog.pg_namespace n ON n.nspname = 'public') mv \
         ON mv.name = c.relname AND mv.nsp = c.relnamespace \
         UNION ALL SELECT {} FROM ({indexes}) x",
        cols.join(", "),
        index_cols.join(", "),
    )
}

/// `pg_attribute` with the declared types that Arrow types lose (`tessera.column_types`:
/// `varchar(20)` is `atttypid` 1043 with `atttypmod` 24, `numeric(10,2)` has modifier
/// 655366), which `format_type(atttypid, atttypmod)` and clients' column reflection read.
fn pg_attribute_overlay(schema: &datafusion::arrow::datatypes::Schema) -> String {
    let cols: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            name @ ("atttypid" | "atttypmod") => format!("COALESCE(d.{name}, a.{name}) AS {name}"),
            name => format!("a.\"{name}\""),
        })
        .collect();
    format!(
        "SELECT {} FROM pg_catalog.pg_attribute a LEFT JOIN \
         (SELECT c.oid AS relid, t.column_name, t.atttypid, t.atttypmod \
          FROM tessera.column_types t \
          JOIN pg_catalog.pg_namespace n ON n.nspname = 'public' \
          JOIN pg_catalog.pg_class c ON c.relname = t.table_name AND c.relnamespace = n.oid) d \
         ON d.relid = a.attrelid AND d.column_name = a.attname",
        cols.join(", ")
    )
}

/// The `pg_class` rows of primary key indexes; other columns are NULL.
const PK_INDEXES: &str = "SELECT pk.idxoid AS oid, pk.relname || '_pkey' AS relname, \
     pk.nsp AS relnamespace, 'i' AS relkind, CAST(pk.natts AS SMALLINT) AS relnatts, \
     false AS relhasindex, true AS relispopulated, 'p' AS relpersistence, \
     false AS relisshared, 0 AS reltuples \
     FROM (PRIMARY_KEYS) pk";

const OVERLAY_VIEWS: [(&str, &str); 2] = [
    (
        "pg_tables",
        "SELECT n.nspname AS schemaname, c.relname AS tablename, 'tessera' AS tableowner, \
         CAST(NULL AS VARCHAR) AS tablespace, false AS hasindexes, false AS hasrules, \
         false AS hastriggers, false AS rowsecurity \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p')",
    ),
    (
        "pg_views",
        "SELECT n.nspname AS schemaname, c.relname AS viewname, 'tessera' AS viewowner, \
         d.definition AS definition \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN tessera.view_definitions d ON d.view = c.relname AND n.nspname = 'public' \
         WHERE c.relkind = 'v'",
    ),
];

/// Rows added to static `pg_catalog` tables: each view has one rewrite rule (whose oid is
/// the view's), and the rule depends on every relation the view reads
/// (`tessera.view_dependencies`), as in PostgreSQL; each declared primary key has a
/// constraint and an index (`tessera.primary_keys`).
const OVERLAY_ROWS: [(&str, &str); 4] = [
    (
        "pg_rewrite",
        "SELECT c.oid AS oid, '_RETURN' AS rulename, c.oid AS ev_class, '1' AS ev_type, \
         'O' AS ev_enabled, true AS is_instead \
         FROM pg_catalog.pg_class c WHERE c.relkind IN ('v', 'm')",
    ),
    (
        "pg_depend",
        // An internal row ties each view's rule to the view, and a normal row to each
        // relation the view reads. Catalog oids are pg_class's own, so '...'::regclass
        // lookups match.
        "SELECT k.rw AS classid, v.oid AS objid, 0 AS objsubid, k.pc AS refclassid, \
                r.oid AS refobjid, 0 AS refobjsubid, 'n' AS deptype \
         FROM tessera.view_dependencies d \
         JOIN pg_catalog.pg_class v ON v.relname = d.view AND v.relnamespace <> 11 \
         JOIN pg_catalog.pg_class r ON r.relname = d.depends_on AND r.relnamespace <> 11 \
         CROSS JOIN (SELECT max(CASE WHEN relname = 'pg_rewrite' THEN oid END) AS rw, \
                            max(CASE WHEN relname = 'pg_class' THEN oid END) AS pc \
                     FROM pg_catalog.pg_class WHERE relnamespace = 11) k \
         UNION ALL \
         SELECT k.rw AS classid, v.oid AS objid, 0 AS objsubid, k.pc AS refclassid, \
                v.oid AS refobjid, 0 AS refobjsubid, 'i' AS deptype \
         FROM pg_catalog.pg_class v \
         CROSS JOIN (SELECT max(CASE WHEN relname = 'pg_rewrite' THEN oid END) AS rw, \
                            max(CASE WHEN relname = 'pg_class' THEN oid END) AS pc \
                     FROM pg_catalog.pg_class WHERE relnamespace = 11) k \
         WHERE v.relkind IN ('v', 'm')",
    ),
    // A primary key is a constraint with a unique index (oid: the table's plus 2^30,
    // clear of every relation oid), as PostgreSQL reports it (SQLAlchemy's
    // get_pk_constraint joins the two). The index's pg_class row is in pg_class_overlay.
    (
        "pg_constraint",
        "SELECT pk.idxoid AS oid, pk.relname || '_pkey' AS conname, \
                pk.nsp AS connamespace, 'p' AS contype, false AS condeferrable, \
                false AS condeferred, true AS convalidated, pk.relid AS conrelid, \
                0 AS contypid, pk.idxoid AS conindid, 0 AS conparentid, \
                0 AS confrelid, ' ' AS confupdtype, ' ' AS confdeltype, ' ' AS confmatchtype, \
                true AS conislocal, 0 AS coninhcount, true AS connoinherit, \
                pk.conkey AS conkey \
         FROM (PRIMARY_KEYS) pk",
    ),
    (
        "pg_index",
        "SELECT pk.idxoid AS indexrelid, pk.relid AS indrelid, \
                pk.natts AS indnatts, pk.natts AS indnkeyatts, true AS indisunique, \
                false AS indnullsnotdistinct, true AS indisprimary, false AS indisexclusion, \
                true AS indimmediate, false AS indisclustered, true AS indisvalid, \
                false AS indcheckxmin, true AS indisready, true AS indislive, \
                false AS indisreplident, pk.indkey AS indkey, pk.zeros AS indcollation, \
                pk.zeros AS indoption \
         FROM (PRIMARY_KEYS) pk",
    ),
];

/// Each declared primary key (`tessera.primary_keys`) with its table's oid and schema, its
/// index's oid, its column numbers as array text (`pg_constraint.conkey`, `{2,1}`) and as
/// int2vector text (`pg_index.indkey`, `2 1`), and its column count; substituted for
/// `PRIMARY_KEYS` above. Nothing here aggregates: DataFusion 55 pushes a join's dynamic
/// filter on a column computed above an aggregate onto the wrong column below it, and a
/// join of `pg_constraint` and `pg_index` found nothing.
const PRIMARY_KEYS: &str = "SELECT c.oid AS relid, n.oid AS nsp, k.table_name AS relname, \
       CAST(CAST(c.oid AS BIGINT) + 1073741824 AS INT) AS idxoid, k.attnums AS indkey, \
       '{' || replace(k.attnums, ' ', ',') || '}' AS conkey, \
       regexp_replace(k.attnums, '[0-9]+', '0', 'g') AS zeros, \
       CAST(cardinality(k.column_names) AS INT) AS natts \
     FROM tessera.primary_keys k \
     JOIN pg_catalog.pg_namespace n ON n.nspname = 'public' \
     JOIN pg_catalog.pg_class c ON c.relname = k.table_name AND c.relnamespace = n.oid";

async fn install_overlay(ctx: &SessionContext) -> Result<(), EngineError> {
    let catalog = ctx
        .catalog(DATABASE)
        .ok_or_else(|| EngineError::NotSupported("catalog missing".into()))?;
    let Some(base) = catalog.schema("pg_catalog") else {
        return Ok(());
    };
    // `pg_class` first, over the base table; then the views over `pg_class`, over it
    // (so that `pg_tables` does not list materialised views).
    let mut first = vec![("pg_matviews", PG_MATVIEWS.to_string())];
    if let Some(table) = base.table("pg_class").await? {
        first.push(("pg_class", pg_class_overlay(&table.schema())));
    }
    let mut views = HashMap::new();
    plan_views(ctx, first, &mut views).await?;
    let overlay = PgCatalogOverlay {
        base: base.clone(),
        views: views.clone(),
    };
    catalog.register_schema("pg_catalog", Arc::new(overlay))?;

    let mut rest: Vec<(&'static str, String)> = OVERLAY_VIEWS
        .iter()
        .map(|(n, sql)| (*n, sql.to_string()))
        .collect();
    if let Some(table) = base.table("pg_attribute").await? {
        rest.push(("pg_attribute", pg_attribute_overlay(&table.schema())));
    }
    for (name, extra) in OVERLAY_ROWS {
        if let Some(table) = base.table(name).await? {
            let extra = extra.replace("PRIMARY_KEYS", PRIMARY_KEYS);
            rest.push((name, union_with_base(name, &table.schema(), &extra)));
        }
    }
    plan_views(ctx, rest, &mut views).await?;
    catalog.register_schema("pg_catalog", Arc::new(PgCatalogOverlay { base, views }))?;
    Ok(())
}

async fn plan_views(
    ctx: &SessionContext,
    sources: Vec<(&'static str, String)>,
    views: &mut HashMap<&'static str, Arc<dyn TableProvider>>,
) -> Result<(), EngineError> {
    for (name, sql) in sources {
        let plan = ctx.state().create_logical_plan(&sql).await?;
        // Bounded, so the system tables it reads are read on the catalog's account.
        let view: Arc<dyn TableProvider> = Arc::new(crate::access::view::BoundedView::new(
            &format!("pg_catalog.{name}"),
            Arc::new(ViewTable::new(plan, Some(sql))),
        ));
        views.insert(name, view);
    }
    Ok(())
}

/// The names a select list gives its columns (`... AS name`).
fn provided_columns(select: &str) -> Vec<&str> {
    select
        .split(" AS ")
        .skip(1)
        .filter_map(|s| s.split(|c: char| c == ',' || c.is_whitespace()).next())
        .collect()
}

/// A select list of `schema`'s columns read from `x`, cast to their types: those named in
/// `provided`, NULL for the others.
fn cast_columns(schema: &datafusion::arrow::datatypes::Schema, provided: &[&str]) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let value = if provided.contains(&f.name().as_str()) {
                format!("x.\"{}\"", f.name())
            } else {
                "NULL".to_string()
            };
            format!(
                "arrow_cast({value}, '{}') AS \"{}\"",
                f.data_type(),
                f.name()
            )
        })
        .collect()
}

/// `SELECT * FROM pg_catalog.<name> UNION ALL <extra rows>`, with the extra rows cast to
/// the base table's column types and NULL for the columns they do not set.
fn union_with_base(
    name: &str,
    schema: &datafusion::arrow::datatypes::Schema,
    extra: &str,
) -> String {
    let cols = cast_columns(schema, &provided_columns(extra));
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    format!(
        "SELECT {} FROM pg_catalog.{name} UNION ALL SELECT {} FROM ({extra}) x",
        names.join(", "),
        cols.join(", ")
    )
}

#[async_trait::async_trait]
impl SchemaProvider for PgCatalogOverlay {
    fn table_names(&self) -> Vec<String> {
        self.base.table_names()
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        match self.views.get(name) {
            Some(v) => Ok(Some(v.clone())),
            None => self.base.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.views.contains_key(name) || self.base.table_exist(name)
    }
}
