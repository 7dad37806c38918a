//! Probabilistic record linkage (Fellegi–Sunter): `train_match_model` and
//! `score_matches`.
//!
//! Users write the candidate pairs in SQL (blocking rules as joins) with one comparison
//! column per attribute, `cmp_<name>`: an integer level where higher means closer
//! (say 3 exact, 2 and 1 Jaro–Winkler bands, 0 different) and NULL or a negative number
//! when either side is missing. A `tf_<name>` column, if present, holds the share of
//! records having the value compared (term frequency) and replaces `u` of the top level
//! when scoring, so agreeing on a rare surname counts for more than on a common one.
//!
//! - `u[c][l]`, the probability of level `l` among non-matching pairs, comes from the
//!   random pairs relation (same columns, pairs drawn at random).
//! - `m[c][l]`, the same among matching pairs, and the share of matches are estimated
//!   by expectation–maximisation over the candidate pairs, grouped by their pattern of
//!   levels (so each iteration costs the number of distinct patterns, not pairs).
//! - Comparisons the blocking rule forces to agree (`fixed`) say nothing within the
//!   candidates: EM leaves them out and reports their `m` as NULL. The prior is then
//!   converted from "among candidates" to "among all pairs" by multiplying by the
//!   chance that random pairs agree on them, so models trained on several blocking
//!   rules can be averaged in SQL and used on pairs from any of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Float64Array, Float64Builder, Int64Array, RecordBatch, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::common::{exec_err, plan_datafusion_err, Result};

/// The key columns of a pairs relation.
pub const PAIR_KEYS: [&str; 4] = ["left_source", "left_key", "right_source", "right_key"];
/// The name of the prior's row in a model.
pub const PRIOR: &str = "(prior)";
const EPSILON: f64 = 1e-9;
const MAX_ITERATIONS: usize = 200;

pub fn model_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("comparison", DataType::Utf8, false),
        Field::new("level", DataType::Int64, true),
        Field::new("m", DataType::Float64, true),
        Field::new("u", DataType::Float64, true),
        Field::new("match_weight", DataType::Float64, true),
        Field::new("pairs", DataType::Int64, false),
    ]))
}

pub fn scores_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("left_source", DataType::Utf8, false),
        Field::new("left_key", DataType::Utf8, false),
        Field::new("right_source", DataType::Utf8, false),
        Field::new("right_key", DataType::Utf8, false),
        Field::new("match_weight", DataType::Float64, false),
        Field::new("match_probability", DataType::Float64, false),
    ]))
}

/// The comparison columns (`cmp_*`) of a pairs relation, in schema order.
pub fn comparisons(relation: &str, schema: &Schema) -> Result<Vec<String>> {
    let names: Vec<String> = schema
        .fields()
        .iter()
        .filter_map(|f| f.name().strip_prefix("cmp_").map(str::to_string))
        .collect();
    if names.is_empty() {
        return Err(plan_datafusion_err!(
            "relation \"{relation}\" has no comparison columns: name them cmp_<attribute> (integer levels, NULL when a side is missing)"
        ));
    }
    for f in schema.fields() {
        if f.name().starts_with("cmp_") && !f.data_type().is_integer() {
            return Err(plan_datafusion_err!(
                "relation \"{relation}\": comparison column \"{}\" must be an integer level, not {}",
                f.name(),
                f.data_type()
            ));
        }
    }
    Ok(names)
}

/// Levels per comparison (`None`: no evidence), read from a batch.
fn levels(batch: &RecordBatch, names: &[String]) -> Result<Vec<Vec<Option<i64>>>> {
    names
        .iter()
        .map(|n| {
            let col = batch
                .column_by_name(&format!("cmp_{n}"))
                .ok_or_else(|| plan_datafusion_err!("missing column cmp_{n}"))?;
            let col = cast(col, &DataType::Int64)?;
            let a = col.as_primitive::<Int64Type>();
            Ok((0..a.len())
                .map(|i| (!a.is_null(i) && a.value(i) >= 0).then(|| a.value(i)))
                .collect())
        })
        .collect()
}

/// Level counts of the random pairs: `u[c][level]`, Laplace-smoothed over the levels
/// seen in either relation so no level has probability zero.
fn estimate_u(
    names: &[String],
    random: &[RecordBatch],
    seen: &[BTreeMap<i64, u64>],
) -> Result<Vec<BTreeMap<i64, f64>>> {
    let mut counts: Vec<BTreeMap<i64, u64>> = vec![BTreeMap::new(); names.len()];
    for b in random {
        for (c, col) in levels(b, names)?.into_iter().enumerate() {
            for l in col.into_iter().flatten() {
                *counts[c].entry(l).or_default() += 1;
            }
        }
    }
    Ok(counts
        .iter()
        .zip(seen)
        .map(|(random_counts, seen)| {
            let mut all: BTreeMap<i64, f64> = BTreeMap::new();
            for l in random_counts.keys().chain(seen.keys()) {
                all.insert(*l, 1.0 + random_counts.get(l).copied().unwrap_or(0) as f64);
            }
            let total: f64 = all.values().sum();
            all.values_mut().for_each(|v| *v /= total);
            all
        })
        .collect())
}

/// Train a model: u from `random`, m and the prior by EM over `pairs`.
pub fn train(
    pairs_name: &str,
    pairs: &[RecordBatch],
    random: &[RecordBatch],
    fixed: &[String],
) -> Result<RecordBatch> {
    let Some(first) = pairs.first() else {
        return exec_err!("train_match_model: relation \"{pairs_name}\" has no pairs");
    };
    let names = comparisons(pairs_name, &first.schema())?;
    for f in fixed {
        if !names.contains(f) {
            return exec_err!(
                "train_match_model: fixed comparison \"{f}\" is not a column cmp_{f} of \"{pairs_name}\""
            );
        }
    }
    // Patterns of levels with their counts.
    let mut patterns: HashMap<Vec<Option<i64>>, u64> = HashMap::new();
    let mut seen: Vec<BTreeMap<i64, u64>> = vec![BTreeMap::new(); names.len()];
    for b in pairs {
        let cols = levels(b, &names)?;
        for row in 0..b.num_rows() {
            let p: Vec<Option<i64>> = cols.iter().map(|c| c[row]).collect();
            for (c, l) in p.iter().enumerate() {
                if let Some(l) = l {
                    *seen[c].entry(*l).or_default() += 1;
                }
            }
            *patterns.entry(p).or_default() += 1;
        }
    }
    let u = estimate_u(&names, random, &seen)?;
    let free: Vec<usize> = (0..names.len())
        .filter(|c| !fixed.contains(&names[*c]))
        .collect();

    // Start: matches favour higher levels (m ∝ 2^rank), 10% of candidates match.
    let mut m: Vec<BTreeMap<i64, f64>> = u
        .iter()
        .map(|levels| {
            let mut out: BTreeMap<i64, f64> = levels
                .keys()
                .enumerate()
                .map(|(rank, l)| (*l, 2f64.powi(rank as i32 * 2)))
                .collect();
            let total: f64 = out.values().sum();
            out.values_mut().for_each(|v| *v /= total);
            out
        })
        .collect();
    let mut lambda = 0.1;
    let patterns: Vec<(Vec<Option<i64>>, f64)> =
        patterns.into_iter().map(|(p, n)| (p, n as f64)).collect();
    let total: f64 = patterns.iter().map(|(_, n)| n).sum();
    for _ in 0..MAX_ITERATIONS {
        let mut new_m: Vec<BTreeMap<i64, f64>> = vec![BTreeMap::new(); names.len()];
        let mut matched = 0.0;
        for (p, n) in &patterns {
            let mut ratio = lambda / (1.0 - lambda);
            for &c in &free {
                if let Some(l) = p[c] {
                    ratio *= m[c].get(&l).copied().unwrap_or(EPSILON).max(EPSILON)
                        / u[c].get(&l).copied().unwrap_or(EPSILON).max(EPSILON);
                }
            }
            let w = if ratio.is_finite() {
                ratio / (1.0 + ratio)
            } else {
                1.0
            };
            matched += n * w;
            for &c in &free {
                if let Some(l) = p[c] {
                    *new_m[c].entry(l).or_default() += n * w;
                }
            }
        }
        let new_lambda = (matched / total).clamp(EPSILON, 1.0 - EPSILON);
        let mut change = (new_lambda - lambda).abs();
        for &c in &free {
            let sum: f64 = new_m[c].values().sum();
            for l in u[c].keys() {
                let v = (new_m[c].get(l).copied().unwrap_or(0.0) / sum.max(EPSILON)).max(EPSILON);
                change = change.max((v - m[c].get(l).copied().unwrap_or(0.0)).abs());
                m[c].insert(*l, v);
            }
        }
        lambda = new_lambda;
        if change < 1e-7 {
            break;
        }
    }
    // Among all pairs, the match share is smaller by the chance that non-matching pairs
    // pass the blocking rule's fixed comparisons (their top level).
    let mut prior = lambda;
    for f in fixed {
        let c = names.iter().position(|n| n == f).unwrap_or(0);
        if let Some((_, top)) = u[c].iter().next_back() {
            prior *= top;
        }
    }

    let (mut comparison, mut level, mut mm, mut uu, mut weight, mut count) = (
        StringBuilder::new(),
        Vec::new(),
        Float64Builder::new(),
        Float64Builder::new(),
        Float64Builder::new(),
        Vec::new(),
    );
    comparison.append_value(PRIOR);
    level.push(None);
    mm.append_value(prior);
    uu.append_null();
    weight.append_value((prior / (1.0 - prior)).log2());
    count.push(total as i64);
    for (c, name) in names.iter().enumerate() {
        for (l, u_l) in &u[c] {
            comparison.append_value(name);
            level.push(Some(*l));
            uu.append_value(*u_l);
            if fixed.contains(name) {
                mm.append_null();
                weight.append_null();
            } else {
                let m_l = m[c].get(l).copied().unwrap_or(EPSILON);
                mm.append_value(m_l);
                weight.append_value((m_l / u_l).log2());
            }
            count.push(seen[c].get(l).copied().unwrap_or(0) as i64);
        }
    }
    Ok(RecordBatch::try_new(
        model_schema(),
        vec![
            Arc::new(comparison.finish()),
            Arc::new(Int64Array::from(level)),
            Arc::new(mm.finish()),
            Arc::new(uu.finish()),
            Arc::new(weight.finish()),
            Arc::new(Int64Array::from(count)),
        ],
    )?)
}

/// A trained model, read back from its relation.
pub struct Model {
    pub prior: f64,
    /// `(m, u)` per comparison and level.
    pub levels: HashMap<String, BTreeMap<i64, (f64, f64)>>,
}

impl Model {
    pub fn from_batches(name: &str, batches: &[RecordBatch]) -> Result<Model> {
        let mut prior = None;
        let mut levels: HashMap<String, BTreeMap<i64, (f64, f64)>> = HashMap::new();
        for b in batches {
            let col = |n: &str, t: &DataType| -> Result<Arc<dyn Array>> {
                let c = b.column_by_name(n).ok_or_else(|| {
                    plan_datafusion_err!(
                        "model relation \"{name}\" has no column \"{n}\" (a model has columns comparison, level, m, u)"
                    )
                })?;
                Ok(cast(c, t)?)
            };
            let comparison = col("comparison", &DataType::Utf8)?;
            let comparison = comparison.as_string::<i32>();
            let level = col("level", &DataType::Int64)?;
            let level = level.as_primitive::<Int64Type>();
            let m = col("m", &DataType::Float64)?;
            let m = m.as_primitive::<Float64Type>();
            let u = col("u", &DataType::Float64)?;
            let u = u.as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                if comparison.is_null(i) || m.is_null(i) {
                    continue;
                }
                if comparison.value(i) == PRIOR {
                    prior = Some(m.value(i));
                } else if !level.is_null(i) && !u.is_null(i) {
                    levels
                        .entry(comparison.value(i).to_string())
                        .or_default()
                        .insert(level.value(i), (m.value(i), u.value(i)));
                }
            }
        }
        let prior = prior.ok_or_else(|| {
            plan_datafusion_err!("model relation \"{name}\" has no '{PRIOR}' row")
        })?;
        if !(prior > 0.0 && prior < 1.0) {
            return exec_err!(
                "model relation \"{name}\": the prior must be between 0 and 1, got {prior}"
            );
        }
        Ok(Model { prior, levels })
    }
}

/// Score candidate pairs: match weight (log2 odds) and probability.
pub fn score(model: &Model, batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let names = comparisons("pairs", &schema)?;
    let cols = levels(batch, &names)?;
    let tf: Vec<Option<Arc<dyn Array>>> = names
        .iter()
        .map(|n| {
            batch
                .column_by_name(&format!("tf_{n}"))
                .map(|c| cast(c, &DataType::Float64))
                .transpose()
        })
        .collect::<std::result::Result<_, _>>()?;
    let tops: Vec<Option<i64>> = names
        .iter()
        .map(|n| {
            model
                .levels
                .get(n)
                .and_then(|l| l.keys().next_back().copied())
        })
        .collect();
    let base = (model.prior / (1.0 - model.prior)).log2();
    let mut weights = Vec::with_capacity(batch.num_rows());
    // Rows index every comparison's column, so a range loop is the plain way.
    #[allow(clippy::needless_range_loop)]
    for row in 0..batch.num_rows() {
        let mut w = base;
        for (c, name) in names.iter().enumerate() {
            let (Some(l), Some(levels)) = (cols[c][row], model.levels.get(name)) else {
                continue;
            };
            let Some((m, u)) = levels.get(&l) else {
                return exec_err!(
                    "score_matches: level {l} of comparison \"{name}\" is not in the model (retrain, or map it to a known level)"
                );
            };
            let mut u = *u;
            if Some(l) == tops[c] {
                if let Some(tf) = &tf[c] {
                    let tf = tf.as_primitive::<Float64Type>();
                    if !tf.is_null(row) && tf.value(row) > 0.0 {
                        u = tf.value(row);
                    }
                }
            }
            w += (m.max(EPSILON) / u.max(EPSILON)).log2();
        }
        weights.push(w);
    }
    let probability: Float64Array = weights
        .iter()
        .map(|w| {
            let odds = 2f64.powf(*w);
            if odds.is_finite() {
                odds / (1.0 + odds)
            } else {
                1.0
            }
        })
        .collect();
    let keys = PAIR_KEYS
        .iter()
        .map(|k| {
            let c = batch
                .column_by_name(k)
                .ok_or_else(|| plan_datafusion_err!("pairs relation has no column \"{k}\""))?;
            Ok(cast(c, &DataType::Utf8)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut columns = keys;
    columns.push(Arc::new(Float64Array::from(weights)));
    columns.push(Arc::new(probability));
    Ok(RecordBatch::try_new(scores_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    /// Pairs with levels drawn from `m` (matches) or `u` (non-matches).
    fn pairs(n: usize, match_share: f64, m: &[f64; 3], u: &[f64; 3], seed: u64) -> RecordBatch {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let draw = |p: &[f64; 3], r: f64| {
            if r < p[0] {
                0
            } else if r < p[0] + p[1] {
                1
            } else {
                2
            }
        };
        let (mut a, mut b, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let is_match = next() < match_share;
            let p = if is_match { m } else { u };
            let (x, y) = (next(), next());
            a.push(Some(draw(p, x)));
            // The second comparison is missing on every tenth pair.
            b.push((i % 10 != 0).then(|| draw(p, y)));
            keys.push(format!("k{i}"));
        }
        let key = Arc::new(StringArray::from(keys)) as Arc<dyn Array>;
        let schema = Arc::new(Schema::new(vec![
            Field::new("left_source", DataType::Utf8, false),
            Field::new("left_key", DataType::Utf8, false),
            Field::new("right_source", DataType::Utf8, false),
            Field::new("right_key", DataType::Utf8, false),
            Field::new("cmp_name", DataType::Int64, true),
            Field::new("cmp_dob", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                key.clone(),
                key.clone(),
                key.clone(),
                key,
                Arc::new(Int64Array::from(a)),
                Arc::new(Int64Array::from(b)),
            ],
        )
        .expect("batch")
    }
    const M: [f64; 3] = [0.05, 0.15, 0.8];
    const U: [f64; 3] = [0.8, 0.15, 0.05];

    #[test]
    fn em_recovers_m_and_the_match_share() {
        let candidates = pairs(20_000, 0.3, &M, &U, 1);
        let random = pairs(20_000, 0.0, &M, &U, 2);
        let model =
            train("pairs", std::slice::from_ref(&candidates), &[random], &[]).expect("train");
        let m = Model::from_batches("model", &[model]).expect("model");
        assert!((m.prior - 0.3).abs() < 0.03, "prior {}", m.prior);
        for c in ["name", "dob"] {
            let (m2, u2) = m.levels[c][&2];
            assert!((m2 - 0.8).abs() < 0.05, "{c}: m {m2}");
            assert!((u2 - 0.05).abs() < 0.01, "{c}: u {u2}");
        }
        let scored = score(&m, &candidates).expect("score");
        let p = scored.column(5).as_primitive::<Float64Type>();
        let names = candidates.column(4).as_primitive::<Int64Type>();
        let dobs = candidates.column(5).as_primitive::<Int64Type>();
        for i in 0..scored.num_rows() {
            if !dobs.is_null(i) && names.value(i) == 2 && dobs.value(i) == 2 {
                assert!(p.value(i) > 0.95, "both agree: {}", p.value(i));
            }
            if !dobs.is_null(i) && names.value(i) == 0 && dobs.value(i) == 0 {
                assert!(p.value(i) < 0.01, "both differ: {}", p.value(i));
            }
        }
    }

    #[test]
    fn fixed_comparisons_are_left_out_and_scale_the_prior() {
        let candidates = pairs(5_000, 0.3, &M, &U, 3);
        let random = pairs(5_000, 0.0, &M, &U, 4);
        let model = train("pairs", &[candidates], &[random], &["dob".into()]).expect("train");
        let m = model.column(2).as_primitive::<Float64Type>();
        let comparison = model.column(0).as_string::<i32>();
        for i in 0..model.num_rows() {
            if comparison.value(i) == "dob" {
                assert!(m.is_null(i));
            }
        }
        // Among all pairs, matches are rarer than among candidates by u(dob agrees).
        let prior = m.value(0);
        assert!(prior < 0.3 * 0.1 && prior > 0.3 * 0.02, "prior {prior}");
    }

    #[test]
    fn bad_input_is_named() {
        let e = train("p", &[], &[], &[]).expect_err("no pairs").to_string();
        assert!(e.contains("no pairs"), "{e}");
        let schema = Schema::new(vec![Field::new("left_key", DataType::Utf8, false)]);
        let e = comparisons("p", &schema).expect_err("no cmp").to_string();
        assert!(e.contains("cmp_<attribute>"), "{e}");
        let e = Model::from_batches("model", &[])
            .err()
            .expect("no prior")
            .to_string();
        assert!(e.contains("(prior)"), "{e}");
    }
}
