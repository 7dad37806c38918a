//! The survivorship aggregates over many partitions, batches and groups, against answers
//! computed row by row.
//!
//! The table has four partitions of several batches each, so every group's rows are spread
//! over partitions and the partial states of each partition must merge (through the
//! group accumulators, or the generic ones for the types without a fast path). Each query
//! also runs with partial aggregation skipped from the first row, which turns input rows
//! directly into states (`convert_to_state`), and without `GROUP BY`. Keys take few
//! distinct values so that ties are frequent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::Result;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::register_all;

const GROUPS: i64 = 1500;
const ROWS: usize = 24_000;

/// One input row; `None` is NULL.
#[derive(Debug, Clone)]
struct Row {
    g: i64,
    s: Option<String>,
    n: Option<i64>,
    ts: Option<i64>,
    p: Option<i32>,
    d: Option<i128>,
}

/// Deterministic rows: a linear congruential generator, no dependency needed.
fn rows() -> Vec<Row> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |m: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % m
    };
    (0..ROWS)
        .map(|_| {
            let g = next(GROUPS as u64) as i64;
            let mut maybe = |m: u64| (next(8) != 0).then(|| next(m) as i64);
            Row {
                g,
                s: maybe(6).map(|v| format!("s{v}")),
                n: maybe(5).map(|v| v - 2),
                ts: maybe(4).map(|v| 1_700_000_000_000_000 + v * 1_000_000),
                p: maybe(3).map(|v| v as i32),
                d: maybe(4).map(|v| i128::from(v) * 125 - 250),
            }
        })
        .collect()
}

fn batch(schema: &Arc<Schema>, rows: &[Row]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.g))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.s.clone()))),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.n))),
        Arc::new(
            TimestampMicrosecondArray::from_iter(rows.iter().map(|r| r.ts)).with_timezone("UTC"),
        ),
        Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.p))),
        Arc::new(
            Decimal128Array::from_iter(rows.iter().map(|r| r.d)).with_precision_and_scale(12, 2)?,
        ),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A session over `rows` in 4 partitions of batches of at most 500 rows.
fn session(rows: &[Row], skip_partial_aggregation: bool) -> Result<SessionContext> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("g", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("p", DataType::Int32, true),
        Field::new("d", DataType::Decimal128(12, 2), true),
    ]));
    let mut partitions = vec![Vec::new(); 4];
    for (i, chunk) in rows.chunks(500).enumerate() {
        partitions[i % 4].push(batch(&schema, chunk)?);
    }
    let mut config = SessionConfig::new()
        .with_target_partitions(4)
        .with_batch_size(700);
    if skip_partial_aggregation {
        let execution = &mut config.options_mut().execution;
        execution.skip_partial_aggregation_probe_rows_threshold = 1;
        execution.skip_partial_aggregation_probe_ratio_threshold = 0.0;
    }
    let ctx = SessionContext::new_with_config(config);
    register_all(&ctx);
    ctx.register_table("t", Arc::new(MemTable::try_new(schema, partitions)?))?;
    Ok(ctx)
}

/// Column `pick` of the eligible row that ranks greatest by `rank`.
fn best<K: Ord, T>(
    rows: &[&Row],
    eligible: impl Fn(&Row) -> bool,
    rank: impl Fn(&Row) -> K,
    pick: impl Fn(&Row) -> Option<T>,
) -> Option<T> {
    rows.iter()
        .copied()
        .filter(|r| eligible(r))
        .max_by_key(|r| rank(r))
        .and_then(pick)
}

/// The expected answers, per group, rendered as DataFusion displays them.
fn expected(rows: &[Row]) -> BTreeMap<i64, Vec<String>> {
    let mut groups: HashMap<i64, Vec<&Row>> = HashMap::new();
    for r in rows {
        groups.entry(r.g).or_default().push(r);
    }
    let show = |v: Option<String>| v.unwrap_or_else(|| "NULL".into());
    let rev = |v: Option<i64>| v.map(|x| -x);
    groups
        .into_iter()
        .map(|(g, rows)| {
            // latest(s, ts): greatest (ts, s).
            let latest = best(
                &rows,
                |r| r.s.is_some() && r.ts.is_some(),
                |r| (vec![r.ts], r.s.clone()),
                |r| r.s.clone(),
            );
            // earliest(n, ts): least (ts, n).
            let earliest = best(
                &rows,
                |r| r.n.is_some() && r.ts.is_some(),
                |r| (vec![rev(r.ts)], rev(r.n)),
                |r| r.n,
            );
            // first_by_priority(s, p): least p (NULL last), then least s.
            let by_priority = best(
                &rows,
                |r| r.s.is_some(),
                |r| {
                    let p = r.p.map(|p| -i64::from(p));
                    (vec![p], r.s.as_ref().map(|s| std::cmp::Reverse(s.clone())))
                },
                |r| r.s.clone(),
            );
            // first_by_priority(d, p, ts): least p, greatest ts (NULLs last), least d.
            let by_priority_ts = best(
                &rows,
                |r| r.d.is_some(),
                |r| (vec![r.p.map(|p| -i64::from(p)), r.ts], r.d.map(|d| -d)),
                |r| r.d,
            );
            // most_frequent(s): most rows, then least s.
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for s in rows.iter().filter_map(|r| r.s.as_deref()) {
                *counts.entry(s).or_default() += 1;
            }
            let top = counts.values().max().copied();
            let most_frequent = counts
                .iter()
                .find(|(_, &c)| Some(c) == top)
                .map(|(s, _)| (*s).to_owned());
            // collect_distinct(n): sorted distinct.
            let distinct: BTreeSet<i64> = rows.iter().filter_map(|r| r.n).collect();
            let collected = (!distinct.is_empty()).then(|| {
                let items: Vec<String> = distinct.iter().map(i64::to_string).collect();
                format!("[{}]", items.join(", "))
            });
            let decimal = |d: i128| {
                let sign = if d < 0 { "-" } else { "" };
                format!("{sign}{}.{:02}", d.abs() / 100, d.abs() % 100)
            };
            (
                g,
                vec![
                    show(latest),
                    show(earliest.map(|n| n.to_string())),
                    show(by_priority),
                    show(by_priority_ts.map(decimal)),
                    show(most_frequent),
                    show(collected),
                ],
            )
        })
        .collect()
}

const AGGREGATES: &str = "latest(s, ts), earliest(n, ts), first_by_priority(s, p), \
     first_by_priority(d, p, ts), most_frequent(s), collect_distinct(n)";

async fn actual(ctx: &SessionContext, sql: &str) -> Result<BTreeMap<i64, Vec<String>>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let options = FormatOptions::default().with_null("NULL");
    let mut out = BTreeMap::new();
    for batch in &batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let groups = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.values().to_vec());
        for row in 0..batch.num_rows() {
            let g = groups.as_ref().map_or(-1, |v| v[row]);
            let values = formatters[1..]
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.insert(g, values);
        }
    }
    Ok(out)
}

#[tokio::test]
async fn group_by_over_partitions_matches_row_by_row_answers() -> Result<()> {
    let rows = rows();
    let want = expected(&rows);
    assert_eq!(want.len(), GROUPS as usize, "every group has rows");
    for skip in [false, true] {
        let ctx = session(&rows, skip)?;
        let got = actual(&ctx, &format!("SELECT g, {AGGREGATES} FROM t GROUP BY g")).await?;
        assert_eq!(got.len(), want.len());
        for (g, values) in &want {
            assert_eq!(
                got.get(g),
                Some(values),
                "group {g}, partial aggregation skipped: {skip}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn one_group_over_partitions_matches_row_by_row_answers() -> Result<()> {
    let rows: Vec<Row> = rows().into_iter().map(|r| Row { g: 0, ..r }).collect();
    let want = expected(&rows);
    let ctx = session(&rows, false)?;
    let got = actual(&ctx, &format!("SELECT 0::bigint AS g, {AGGREGATES} FROM t")).await?;
    assert_eq!(got, want);
    Ok(())
}
