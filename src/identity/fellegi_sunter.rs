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
//! Training (m, u and the prior) is in [`super::training`]; this module holds the model's
//! shape, reads it back and scores pairs with it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::common::{exec_err, plan_datafusion_err, Result};

/// The key columns of a pairs relation.
pub const PAIR_KEYS: [&str; 4] = ["left_source", "left_key", "right_source", "right_key"];
/// The name of the prior's row in a model.
pub const PRIOR: &str = "(prior)";
pub(crate) const EPSILON: f64 = 1e-9;

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
pub(crate) fn levels(batch: &RecordBatch, names: &[String]) -> Result<Vec<Vec<Option<i64>>>> {
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

    #[test]
    fn bad_input_is_named() {
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
