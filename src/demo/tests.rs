//! End-to-end tests of [`super::generate`]: determinism, empty output and Parquet
//! schemas, plus the file-reading helpers shared with `tests_dataset`.

use super::records::parse_csv;
use super::time::{days_from_civil, DAY};
use super::*;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashSet;
use std::fs;
use std::path::Path;

/// A scratch directory removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("tessera-demo-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn run(tag: &str, customers: usize, seed: u64) -> (TempDir, Summary) {
    let dir = TempDir::new(tag);
    let opts = GenerateOptions {
        dir: dir.0.clone(),
        customers,
        seed,
        progress: false,
    };
    let summary = generate(&opts).expect("generate");
    (dir, summary)
}

pub(super) fn source<'a>(s: &'a Summary, name: &str) -> &'a GeneratedSource {
    s.sources
        .iter()
        .find(|g| g.name == name)
        .expect("source present")
}

/// Header and data records of a CSV file.
pub(super) fn csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = fs::read_to_string(path).expect("read csv");
    let mut rows = parse_csv(&text);
    assert!(!rows.is_empty(), "{} has no header", path.display());
    let header = rows.remove(0);
    for r in &rows {
        assert_eq!(r.len(), header.len(), "{}: {r:?}", path.display());
    }
    (header, rows)
}

pub(super) fn col(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).expect("column")
}

pub(super) fn parquet(path: &Path) -> Vec<RecordBatch> {
    let file = fs::File::open(path).expect("open parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet reader")
        .build()
        .expect("build");
    reader.collect::<Result<Vec<_>, _>>().expect("read batches")
}

pub(super) fn strings(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b.column_by_name(name).expect("column").as_string::<i32>();
        out.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_string())));
    }
    out
}

pub(super) fn ndjson(path: &Path) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(path).expect("read ndjson");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into Unix seconds.
pub(super) fn parse_ts(s: &str) -> i64 {
    let b = s.as_bytes();
    assert!(
        s.len() == 20 && b[10] == b'T' && b[19] == b'Z',
        "bad timestamp {s:?}"
    );
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().expect("digits");
    days_from_civil(n(0..4), n(5..7) as u32, n(8..10) as u32) * DAY
        + n(11..13) * 3600
        + n(14..16) * 60
        + n(17..19)
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let (_a, sa) = run("det-a", 300, 11);
    let (_b, sb) = run("det-b", 300, 11);
    let (_c, sc) = run("det-c", 300, 12);
    let files = |s: &Summary| {
        let mut v: Vec<PathBuf> = s.sources.iter().map(|g| g.file.clone()).collect();
        v.push(s.ground_truth.clone());
        v
    };
    for ((fa, fb), fc) in files(&sa).iter().zip(files(&sb)).zip(files(&sc)) {
        let (a, b, c) = (
            fs::read(fa).expect("a"),
            fs::read(&fb).expect("b"),
            fs::read(&fc).expect("c"),
        );
        assert!(a == b, "{} differs between identical runs", fa.display());
        assert!(a != c, "{} identical across seeds", fa.display());
    }
    let rows = |s: &Summary| s.sources.iter().map(|g| g.rows).collect::<Vec<_>>();
    assert_eq!(rows(&sa), rows(&sb));
}

#[test]
fn zero_customers_writes_empty_files() {
    let (_d, s) = run("zero", 0, 1);
    assert_eq!(s.people, 0);
    assert_eq!(s.sources.len(), 7);
    for g in &s.sources {
        assert_eq!(g.rows, 0, "{}", g.name);
        assert!(g.file.exists());
    }
    assert_eq!(
        parquet(&source(&s, "shop_orders").file)
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        0
    );
    assert_eq!(csv(&s.ground_truth).1.len(), 0);
}

#[test]
pub(super) fn parquet_files_have_expected_schema() {
    let (_d, s) = run("parquet", 400, 5);
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let cases = [
        (
            "shop_orders",
            vec![
                ("order_id", DataType::Utf8, false),
                ("customer_email", DataType::Utf8, false),
                ("customer_name", DataType::Utf8, false),
                ("phone", DataType::Utf8, true),
                ("ordered_at", ts.clone(), false),
                ("total", DataType::Float64, false),
                ("currency", DataType::Utf8, false),
                ("status", DataType::Utf8, false),
                ("items", DataType::Int32, false),
            ],
        ),
        (
            "pos_orders",
            vec![
                ("receipt_id", DataType::Utf8, false),
                ("store_id", DataType::Utf8, false),
                ("loyalty_id", DataType::Utf8, true),
                ("phone", DataType::Utf8, true),
                ("purchased_at", ts.clone(), false),
                ("total", DataType::Float64, false),
                ("items", DataType::Int32, false),
            ],
        ),
    ];
    for (name, fields) in cases {
        let g = source(&s, name);
        assert_eq!(g.format, "parquet");
        let batches = parquet(&g.file);
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), g.rows);
        assert!(g.rows > 0);
        let schema = batches[0].schema();
        assert_eq!(schema.fields().len(), fields.len());
        for (f, (want, ty, nullable)) in schema.fields().iter().zip(fields) {
            assert_eq!(
                (f.name().as_str(), f.data_type(), f.is_nullable()),
                (want, &ty, nullable)
            );
        }
        let nulls: usize = batches.iter().map(|b| b.column(3).null_count()).sum();
        assert!(
            nulls > 0 && nulls < g.rows,
            "{name}: phone should be partly null"
        );
    }
    let currencies: HashSet<String> =
        strings(&parquet(&source(&s, "shop_orders").file), "currency")
            .into_iter()
            .flatten()
            .collect();
    assert!(currencies.contains("EUR") && currencies.len() >= 2);
}
