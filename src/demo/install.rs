//! `tessera demo`: generate the dataset (once per size and seed), register every file as
//! an external table, and apply the SQL model in `sql/`.

use std::path::{Path, PathBuf};

use tracing::info;

use super::{generate, GenerateOptions};
use crate::engine::{Engine, EngineError};

/// What `tessera demo` was asked for.
pub struct Demo {
    pub customers: usize,
    pub seed: u64,
    /// Directory of `*.sql` model files applied in name order (skipped if missing).
    pub sql_dir: PathBuf,
}

impl Demo {
    pub async fn install(&self, engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
        let dir = engine.data_dir().join("demo");
        let stamp = dir.join("generated.json");
        let wanted = format!(
            "{{\"customers\":{},\"seed\":{}}}",
            self.customers, self.seed
        );
        let summary_needed =
            std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str());
        let sources: Vec<(String, PathBuf, String)> = if summary_needed {
            let summary = generate(&GenerateOptions {
                dir: dir.clone(),
                customers: self.customers,
                seed: self.seed,
                progress: true,
            })?;
            std::fs::write(&stamp, &wanted).map_err(|e| EngineError::io(&stamp, e))?;
            for s in &summary.sources {
                info!(
                    source = s.name,
                    rows = s.rows,
                    "generated {}",
                    s.file.display()
                );
            }
            summary
                .sources
                .iter()
                .map(|s| (s.name.to_string(), s.file.clone(), s.format.to_string()))
                .chain([(
                    "ground_truth".to_string(),
                    summary.ground_truth.clone(),
                    "csv".to_string(),
                )])
                .collect()
        } else {
            info!(
                "demo data for {wanted} already generated in {}",
                dir.display()
            );
            existing_sources(&dir)
        };
        // Each source is a directory holding its generated file: a file dropped in
        // beside it (a day's new orders) is read as more rows, appended.
        let linked = dir.join("sources");
        for (name, file, format) in sources {
            let location = source_dir(&linked, &name, &file, &format, summary_needed)?;
            engine
                .run_script(&external_table_sql(&name, &location, &file, &format)?)
                .await?;
        }
        apply_model(engine, &self.sql_dir).await?;
        Ok(())
    }
}

/// The directory `sources/<name>/` that source `name` is read from, holding its generated
/// `file` (linked, or copied where links are not possible) under the extension its
/// format reads (`.json` for NDJSON). Made again when the data was generated again.
fn source_dir(
    linked: &Path,
    name: &str,
    file: &Path,
    format: &str,
    regenerated: bool,
) -> Result<PathBuf, EngineError> {
    let dir = linked.join(name);
    if regenerated && dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
    let target = dir.join(format!("{name}.{format}"));
    if !target.exists() && std::fs::hard_link(file, &target).is_err() {
        std::fs::copy(file, &target).map_err(|e| EngineError::io(&target, e))?;
    }
    Ok(dir)
}

/// `CREATE EXTERNAL TABLE` for one source directory (`location`) holding a generated
/// `file`. CSV columns are declared as text: type inference over the first rows would
/// read a column of phone numbers as integers and then fail on a later `+49 ...`; the
/// SQL model casts what it needs.
fn external_table_sql(
    name: &str,
    location: &Path,
    file: &Path,
    format: &str,
) -> Result<String, EngineError> {
    let location = format!("{}/", location.display()).replace('\'', "''");
    if format != "csv" {
        return Ok(format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS {name} STORED AS {} LOCATION '{location}'",
            format.to_uppercase()
        ));
    }
    let header = std::fs::File::open(file)
        .and_then(|f| {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut line)?;
            Ok(line)
        })
        .map_err(|e| EngineError::io(file, e))?;
    let columns: Vec<String> = header
        .trim_end()
        .split(',')
        .map(|c| format!("\"{}\" TEXT", c.trim_matches('"').replace('"', "\"\"")))
        .collect();
    Ok(format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS {name} ({}) STORED AS CSV LOCATION '{location}' OPTIONS ('format.has_header' 'true')",
        columns.join(", ")
    ))
}

fn existing_sources(dir: &Path) -> Vec<(String, PathBuf, String)> {
    let mut out = Vec::new();
    for (file, format) in [
        ("crm_contacts.csv", "csv"),
        ("shop_orders.parquet", "parquet"),
        ("pos_orders.parquet", "parquet"),
        ("web_events.ndjson", "json"),
        ("email_engagement.csv", "csv"),
        ("support_tickets.csv", "csv"),
        ("consent_changes.csv", "csv"),
        ("ground_truth.csv", "csv"),
    ] {
        let path = dir.join(file);
        if path.exists() {
            let name = file.split('.').next().unwrap_or(file).to_string();
            out.push((name, path, format.to_string()));
        }
    }
    out
}

/// Run every `*.sql` file of `sql_dir` in name order.
pub async fn apply_model(
    engine: &Engine,
    sql_dir: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let Ok(read) = std::fs::read_dir(sql_dir) else {
        info!(
            "no SQL model at {}; serving the raw sources",
            sql_dir.display()
        );
        return Ok(());
    };
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| EngineError::io(&f, e))?;
        engine
            .run_script(&text)
            .await
            .map_err(|e| format!("{}: {e}", f.display()))?;
        info!("applied {}", f.display());
    }
    Ok(())
}
