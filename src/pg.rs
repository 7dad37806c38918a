//! PostgreSQL compatibility of the session: `pg_catalog` (from datafusion-pg-catalog) and
//! the server functions clients call at connect time, answered as a PostgreSQL 16 server
//! would (`version()`, `current_setting()`), because clients such as SQLAlchemy parse them.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    context::EmptyContextProvider, setup_pg_catalog,
};

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
fn setting(name: &str) -> Option<&'static str> {
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

pub fn setup(ctx: &SessionContext) -> Result<(), EngineError> {
    setup_pg_catalog(ctx, DATABASE, EmptyContextProvider)
        .map_err(|e| EngineError::DataFusion(*e))?;

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
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parses_like_postgres() {
        // SQLAlchemy's regex: "PostgreSQL (\d+)\.?(\d+)?"
        let v = version_string();
        assert!(v.starts_with("PostgreSQL 16.6 "), "{v}");
        assert!(v.contains("tessera"));
    }

    #[test]
    fn known_and_unknown_settings() {
        assert_eq!(setting("server_version_num"), Some("160006"));
        assert_eq!(setting("TimeZone"), Some("UTC"));
        assert!(setting("no_such_thing").is_none());
    }
}
