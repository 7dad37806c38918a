//! Runs the sqllogictest files under `udfs/slt/` against an in-process DataFusion
//! `SessionContext` with [`register_all`](crate::register_all) applied, one fresh context
//! per file.
//!
//! Values are rendered as text the way DataFusion's own sqllogictest runner does:
//! - NULL as `NULL`, an empty string as `(empty)` (an empty field would vanish from the
//!   whitespace-separated row);
//! - `Float64`/`Float32` with exactly 6 decimals (`0.961111`), `NaN`, `Infinity`,
//!   `-Infinity`;
//! - integers in decimal, booleans as `true`/`false`, everything else as Arrow displays it.
//!
//! Column types are checked strictly: `T` for text, `I` for integers, `R` for floats and
//! `?` for anything else (booleans, dates, ...).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

use crate::register_all;

/// A DataFusion session as seen by sqllogictest.
struct DataFusionDb {
    ctx: SessionContext,
}

#[async_trait]
impl AsyncDB for DataFusionDb {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>> {
        let df = self.ctx.sql(sql).await?;
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let mut rows = Vec::new();
        for batch in &batches {
            let columns = batch.columns();
            for row in 0..batch.num_rows() {
                rows.push(
                    columns
                        .iter()
                        .map(|c| render(c, row))
                        .collect::<Result<Vec<_>>>()?,
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "datafusion"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        t if t.is_integer() => DefaultColumnType::Integer,
        t if t.is_floating() => DefaultColumnType::FloatingPoint,
        _ => DefaultColumnType::Any,
    }
}

fn render(column: &ArrayRef, row: usize) -> Result<String> {
    // A `Null`-typed column has no null buffer: every row is NULL all the same.
    if column.is_null(row) || column.data_type().is_null() {
        return Ok("NULL".to_owned());
    }
    let float = match column.data_type() {
        DataType::Float64 => Some(column.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => Some(f64::from(column.as_primitive::<Float32Type>().value(row))),
        _ => None,
    };
    if let Some(f) = float {
        return Ok(match f {
            f if f.is_nan() => "NaN".to_owned(),
            f if f.is_infinite() && f > 0.0 => "Infinity".to_owned(),
            f if f.is_infinite() => "-Infinity".to_owned(),
            f => format!("{f:.6}"),
        });
    }
    let text = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())?
        .value(row)
        .to_string();
    Ok(if text.is_empty() {
        "(empty)".to_owned()
    } else {
        text
    })
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn slt_files_pass() {
    let files = slt_files();
    assert!(
        files.len() >= 5,
        "expected the .slt files under udfs/slt, found {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        let mut runner = Runner::new(|| async {
            let ctx = SessionContext::new();
            register_all(&ctx);
            Ok(DataFusionDb { ctx })
        });
        runner.with_column_validator(sqllogictest::strict_column_validator);
        if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{}: {}", file.display(), e.display(true)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} .slt file(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, StringArray};

    use super::*;

    #[test]
    fn renders_nulls_empties_and_floats() -> Result<()> {
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("a b"), Some(""), None]));
        assert_eq!(render(&text, 0)?, "a b");
        assert_eq!(render(&text, 1)?, "(empty)");
        assert_eq!(render(&text, 2)?, "NULL");
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![
            2.0 / 3.0,
            f64::NAN,
            f64::NEG_INFINITY,
            1.0,
        ]));
        assert_eq!(render(&floats, 0)?, "0.666667");
        assert_eq!(render(&floats, 1)?, "NaN");
        assert_eq!(render(&floats, 2)?, "-Infinity");
        assert_eq!(render(&floats, 3)?, "1.000000");
        Ok(())
    }
}
