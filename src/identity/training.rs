//! `train_match_model`: the m and u probabilities of a Fellegi–Sunter model and the
//! prior (the share of matches among all pairs), from candidate pairs and random pairs.
//!
//! - `u[c][l]`, the probability of level `l` among non-matching pairs, comes from the
//!   random pairs relation (same comparison columns, pairs drawn at random).
//! - The candidate pairs come from blocking rules. With a `rule` column, each rule's pairs
//!   are one training session; without, all pairs are one. Per session,
//!   expectation–maximisation estimates `m[c][l]` (the same among matching pairs) and
//!   `λ`, the share of matches among the session's pairs. It works over the distinct
//!   patterns of levels with their counts, so an iteration costs patterns, not pairs.
//! - Comparisons a rule forces to agree (`fixed`) say nothing within its pairs: that
//!   session leaves them out of EM. A comparison's `m` is the average over the sessions
//!   where it is free, NULL if it is fixed in all.
//! - The prior. Among all pairs matches are rarer than among a rule's pairs:
//!   `P(match) = λ · P(pass) / P(pass | match)`, where `pass` is "the rule yields the
//!   pair". `P(pass | match)` is the product, over the rule's fixed comparisons, of the
//!   chance that both sides have a value (random pairs) times `m` summed over the levels
//!   the rule lets through (from the sessions where that comparison is free). `P(pass)`
//!   is the session's pair count over the number of pairs blocking chose from, when the
//!   call gives that number; otherwise the odds form of the same rule,
//!   `odds(match) = odds(λ) · P(pass | non-match) / P(pass | match)`, with
//!   `P(pass | non-match)` from `u`. The model's prior is the average over sessions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Float64Builder, Int64Array, RecordBatch, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_datafusion_err, Result};
use tracing::debug;

use super::fellegi_sunter::{comparisons, levels, model_schema, EPSILON, PRIOR};

/// The pairs relation's optional column naming the blocking rule that yielded a pair.
pub const RULE: &str = "rule";
const MAX_ITERATIONS: usize = 200;

/// Which comparisons blocking fixes: the same for every session, or per rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Fixed {
    Every(Vec<String>),
    PerRule(BTreeMap<String, Vec<String>>),
}

impl Fixed {
    /// Parse `'dob, surname'` (every session) or `'phone: phone; name: given, surname'`
    /// (per rule; a rule left out fixes nothing).
    pub fn parse(text: &str) -> std::result::Result<Fixed, String> {
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(|c| c.trim().trim_start_matches("cmp_").to_string())
                .filter(|c| !c.is_empty())
                .collect()
        };
        if !text.contains(':') {
            return Ok(Fixed::Every(list(text)));
        }
        let mut rules = BTreeMap::new();
        for part in text.split(';').filter(|p| !p.trim().is_empty()) {
            let Some((rule, cols)) = part.split_once(':') else {
                return Err(format!(
                    "\"{}\" names no rule: write 'rule: comparison, ...; rule: ...'",
                    part.trim()
                ));
            };
            if rules.insert(rule.trim().to_string(), list(cols)).is_some() {
                return Err(format!("rule \"{}\" is named twice", rule.trim()));
            }
        }
        Ok(Fixed::PerRule(rules))
    }

    pub fn per_rule(&self) -> bool {
        matches!(self, Fixed::PerRule(_))
    }

    /// Every comparison named, for checking against the pairs' columns.
    pub fn names(&self) -> Vec<&String> {
        match self {
            Fixed::Every(v) => v.iter().collect(),
            Fixed::PerRule(r) => r.values().flatten().collect(),
        }
    }

    fn of(&self, rule: &str) -> &[String] {
        match self {
            Fixed::Every(v) => v,
            Fixed::PerRule(r) => r.get(rule).map(Vec::as_slice).unwrap_or(&[]),
        }
    }
}

/// A probability per level of one comparison.
type Levels = BTreeMap<i64, f64>;

/// One blocking rule's pairs, grouped by their pattern of levels.
#[derive(Default)]
struct Session {
    patterns: HashMap<Vec<Option<i64>>, u64>,
    pairs: u64,
    /// Pairs per comparison and level.
    seen: Vec<BTreeMap<i64, u64>>,
}

/// What EM found in one session.
struct Fit {
    lambda: f64,
    m: Vec<BTreeMap<i64, f64>>,
    free: Vec<bool>,
}

/// Train a model from candidate pairs (optionally with a `rule` column) and random
/// pairs. `all_pairs`: how many pairs blocking chose from, if known.
pub fn train(
    pairs_name: &str,
    pairs: &[RecordBatch],
    random: &[RecordBatch],
    fixed: &Fixed,
    all_pairs: Option<f64>,
) -> Result<RecordBatch> {
    let Some(first) = pairs.iter().find(|b| b.num_rows() > 0) else {
        return exec_err!("train_match_model: relation \"{pairs_name}\" has no pairs");
    };
    let names = comparisons(pairs_name, &first.schema())?;
    for f in fixed.names() {
        if !names.contains(f) {
            return exec_err!(
                "train_match_model: fixed comparison \"{f}\" is not a column cmp_{f} of \"{pairs_name}\""
            );
        }
    }
    if all_pairs.is_some_and(|n| n.is_nan() || n < 1.0) {
        return exec_err!(
            "train_match_model: the number of pairs blocking chose from must be at least 1, got {}",
            all_pairs.unwrap_or_default()
        );
    }
    let sessions = sessions(pairs, &names)?;
    let mut seen: Vec<BTreeMap<i64, u64>> = vec![BTreeMap::new(); names.len()];
    for s in sessions.values() {
        for (c, levels) in s.seen.iter().enumerate() {
            for (l, n) in levels {
                *seen[c].entry(*l).or_default() += n;
            }
        }
    }
    let (u, present) = estimate_u(&names, random, &seen)?;

    let fits: Vec<(&String, &Session, Fit)> = sessions
        .iter()
        .map(|(rule, s)| {
            let free: Vec<bool> = names.iter().map(|n| !fixed.of(rule).contains(n)).collect();
            (rule, s, em(s, &u, free))
        })
        .collect();
    // m per comparison: the average over the sessions where it is free.
    let m: Vec<Option<BTreeMap<i64, f64>>> = (0..names.len())
        .map(|c| {
            let learnt: Vec<&BTreeMap<i64, f64>> = fits
                .iter()
                .filter(|f| f.2.free[c])
                .map(|f| &f.2.m[c])
                .collect();
            (!learnt.is_empty()).then(|| {
                u[c].keys()
                    .map(|l| {
                        let sum: f64 = learnt
                            .iter()
                            .map(|m| m.get(l).copied().unwrap_or(0.0))
                            .sum();
                        (*l, sum / learnt.len() as f64)
                    })
                    .collect()
            })
        })
        .collect();

    let mut priors = Vec::new();
    for (rule, s, fit) in &fits {
        // P(pass | match) and P(pass | non-match), over the rule's fixed comparisons and
        // the levels its pairs have there.
        let (mut pass_match, mut pass_other) = (1.0, 1.0);
        for c in (0..names.len()).filter(|c| !fit.free[*c]) {
            let allowed = s.seen[c].keys();
            let sum =
                |p: &BTreeMap<i64, f64>| allowed.clone().filter_map(|l| p.get(l)).sum::<f64>();
            pass_match *= present[c] * m[c].as_ref().map_or(1.0, sum);
            pass_other *= present[c] * sum(&u[c]);
        }
        let pass_match = pass_match.max(EPSILON);
        let prior = match all_pairs {
            Some(n) => fit.lambda * (s.pairs as f64 / n) / pass_match,
            None if fit.free.iter().all(|f| *f) => fit.lambda,
            None => {
                let odds = fit.lambda / (1.0 - fit.lambda) * pass_other / pass_match;
                odds / (1.0 + odds)
            }
        };
        let prior = prior.clamp(EPSILON, 1.0 - EPSILON);
        debug!(
            rule = rule.as_str(),
            pairs = s.pairs,
            lambda = fit.lambda,
            pass_match,
            pass_other,
            prior,
            "train_match_model session"
        );
        priors.push(prior);
    }
    let prior = priors.iter().sum::<f64>() / priors.len() as f64;
    let total: u64 = sessions.values().map(|s| s.pairs).sum();
    model_batch(&names, prior, total, &m, &u, &seen)
}

/// The sessions of a pairs relation, by rule ("" when it has no `rule` column).
fn sessions(pairs: &[RecordBatch], names: &[String]) -> Result<BTreeMap<String, Session>> {
    let mut sessions: BTreeMap<String, Session> = BTreeMap::new();
    for b in pairs {
        let cols = levels(b, names)?;
        let rules = b
            .column_by_name(RULE)
            .map(|c| cast(c, &DataType::Utf8))
            .transpose()?;
        let rules = rules.as_ref().map(|r| r.as_string::<i32>());
        for row in 0..b.num_rows() {
            let rule = match rules {
                Some(r) if r.is_valid(row) => r.value(row),
                _ => "",
            };
            let s = match sessions.get_mut(rule) {
                Some(s) => s,
                None => sessions.entry(rule.to_string()).or_insert_with(|| Session {
                    seen: vec![BTreeMap::new(); names.len()],
                    ..Session::default()
                }),
            };
            let p: Vec<Option<i64>> = cols.iter().map(|c| c[row]).collect();
            for (c, l) in p.iter().enumerate() {
                if let Some(l) = l {
                    *s.seen[c].entry(*l).or_default() += 1;
                }
            }
            *s.patterns.entry(p).or_default() += 1;
            s.pairs += 1;
        }
    }
    Ok(sessions)
}

/// Level shares of the random pairs, Laplace-smoothed over the levels seen in either
/// relation so no level has probability zero, and each comparison's share of random
/// pairs where both sides have a value.
fn estimate_u(
    names: &[String],
    random: &[RecordBatch],
    seen: &[BTreeMap<i64, u64>],
) -> Result<(Vec<Levels>, Vec<f64>)> {
    let mut counts: Vec<BTreeMap<i64, u64>> = vec![BTreeMap::new(); names.len()];
    let mut rows = 0u64;
    for b in random {
        rows += b.num_rows() as u64;
        for (c, col) in levels(b, names)?.into_iter().enumerate() {
            for l in col.into_iter().flatten() {
                *counts[c].entry(l).or_default() += 1;
            }
        }
    }
    let present = counts
        .iter()
        .map(|c| (c.values().sum::<u64>() as f64 + 1.0) / (rows as f64 + 1.0))
        .collect();
    let u = counts
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
        .collect();
    Ok((u, present))
}

/// Expectation–maximisation over one session's patterns: m of the free comparisons and
/// the share of matches.
fn em(session: &Session, u: &[BTreeMap<i64, f64>], free: Vec<bool>) -> Fit {
    // Start: matches favour higher levels (m ∝ 4^rank), 10% of pairs match.
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
    let free_cols: Vec<usize> = (0..u.len()).filter(|c| free[*c]).collect();
    let mut lambda = 0.1;
    let total = session.pairs as f64;
    for _ in 0..MAX_ITERATIONS {
        let mut new_m: Vec<BTreeMap<i64, f64>> = vec![BTreeMap::new(); u.len()];
        let mut matched = 0.0;
        for (p, n) in &session.patterns {
            let n = *n as f64;
            let mut ratio = lambda / (1.0 - lambda);
            for &c in &free_cols {
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
            for &c in &free_cols {
                if let Some(l) = p[c] {
                    *new_m[c].entry(l).or_default() += n * w;
                }
            }
        }
        let new_lambda = (matched / total).clamp(EPSILON, 1.0 - EPSILON);
        let mut change = (new_lambda - lambda).abs();
        for &c in &free_cols {
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
    Fit { lambda, m, free }
}

/// The model's rows: the prior, then each comparison's levels.
fn model_batch(
    names: &[String],
    prior: f64,
    total: u64,
    m: &[Option<BTreeMap<i64, f64>>],
    u: &[BTreeMap<i64, f64>],
    seen: &[BTreeMap<i64, u64>],
) -> Result<RecordBatch> {
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
            match &m[c] {
                None => {
                    mm.append_null();
                    weight.append_null();
                }
                Some(m) => {
                    let m_l = m.get(l).copied().unwrap_or(EPSILON).max(EPSILON);
                    mm.append_value(m_l);
                    weight.append_value((m_l / u_l).log2());
                }
            }
            count.push(seen[c].get(l).copied().unwrap_or(0) as i64);
        }
    }
    RecordBatch::try_new(
        model_schema(),
        vec![
            Arc::new(comparison.finish()),
            Arc::new(Int64Array::from(level)),
            Arc::new(mm.finish()),
            Arc::new(uu.finish()),
            Arc::new(weight.finish()),
            Arc::new(Int64Array::from(count)),
        ],
    )
    .map_err(|e| plan_datafusion_err!("train_match_model: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::fellegi_sunter::{score, Model};
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Float64Type, Int64Type, Schema};

    const M: [f64; 3] = [0.05, 0.15, 0.8];
    const U: [f64; 3] = [0.8, 0.15, 0.05];
    /// Agreement on an identifier-like attribute: rare among non-matches.
    const U_RARE: [f64; 3] = [0.949, 0.05, 0.001];

    /// A deterministic uniform source.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn draw(&mut self, p: &[f64; 3]) -> i64 {
            let r = self.next();
            if r < p[0] {
                0
            } else if r < p[0] + p[1] {
                1
            } else {
                2
            }
        }
    }

    /// Pairs of `rule` with comparisons `cmp_<names[i]>` drawn from `m[i]` for
    /// `matches` pairs and `u[i]` for `others`; the comparison `forced` (the rule's
    /// blocking key) is 2 on every pair. Every tenth pair misses its last comparison.
    fn pairs(
        rule: &str,
        names: &[&str],
        (m, u): (&[[f64; 3]], &[[f64; 3]]),
        (matches, others): (usize, usize),
        forced: Option<usize>,
        rng: &mut Rng,
    ) -> RecordBatch {
        let n = matches + others;
        let mut cols: Vec<Vec<Option<i64>>> = vec![Vec::with_capacity(n); names.len()];
        for i in 0..n {
            let p = if i < matches { m } else { u };
            for (c, col) in cols.iter_mut().enumerate() {
                let level = if forced == Some(c) {
                    2
                } else {
                    rng.draw(&p[c])
                };
                col.push((c + 1 < names.len() || i % 10 != 0).then_some(level));
            }
        }
        let keys: Arc<dyn Array> = Arc::new(StringArray::from(
            (0..n).map(|i| format!("k{i}")).collect::<Vec<_>>(),
        ));
        let mut fields = vec![Field::new(RULE, DataType::Utf8, false)];
        let mut arrays: Vec<Arc<dyn Array>> = vec![Arc::new(StringArray::from(vec![rule; n]))];
        for k in ["left_source", "left_key", "right_source", "right_key"] {
            fields.push(Field::new(k, DataType::Utf8, false));
            arrays.push(keys.clone());
        }
        for (name, col) in names.iter().zip(cols) {
            fields.push(Field::new(format!("cmp_{name}"), DataType::Int64, true));
            arrays.push(Arc::new(Int64Array::from(col)));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch")
    }

    fn prior(model: &RecordBatch) -> f64 {
        Model::from_batches("model", std::slice::from_ref(model))
            .expect("model")
            .prior
    }

    #[test]
    fn em_recovers_m_and_the_match_share() {
        let mut rng = Rng(1);
        let (m, u) = ([M, M], [U, U]);
        let candidates = pairs(
            "",
            &["name", "dob"],
            (&m, &u),
            (6_000, 14_000),
            None,
            &mut rng,
        );
        let random = pairs("", &["name", "dob"], (&m, &u), (0, 20_000), None, &mut rng);
        let model = train(
            "pairs",
            std::slice::from_ref(&candidates),
            &[random],
            &Fixed::Every(vec![]),
            None,
        )
        .expect("train");
        let m = Model::from_batches("model", &[model]).expect("model");
        assert!((m.prior - 0.3).abs() < 0.03, "prior {}", m.prior);
        for c in ["name", "dob"] {
            let (m2, u2) = m.levels[c][&2];
            assert!((m2 - 0.8).abs() < 0.05, "{c}: m {m2}");
            assert!((u2 - 0.05).abs() < 0.01, "{c}: u {u2}");
        }
        let scored = score(&m, &candidates).expect("score");
        let p = scored.column(5).as_primitive::<Float64Type>();
        let names = candidates.column_by_name("cmp_name").expect("name");
        let dobs = candidates.column_by_name("cmp_dob").expect("dob");
        let (names, dobs) = (
            names.as_primitive::<Int64Type>(),
            dobs.as_primitive::<Int64Type>(),
        );
        for i in 0..scored.num_rows() {
            if !dobs.is_null(i) && names.value(i) == 2 && dobs.value(i) == 2 {
                assert!(p.value(i) > 0.95, "both agree: {}", p.value(i));
            }
            if !dobs.is_null(i) && names.value(i) == 0 && dobs.value(i) == 0 {
                assert!(p.value(i) < 0.01, "both differ: {}", p.value(i));
            }
        }
    }

    /// Two blocking rules over one population of 10^6 pairs with 1% matches: rule `a`
    /// yields the pairs agreeing on the identifier-like `a`, rule `b` those agreeing on
    /// `b`. Both are nearly pure (λ ≈ 0.89), which is where a prior scaled by `λ` times
    /// u alone came out 11x too small.
    #[test]
    fn sessions_per_rule_give_the_prior_among_all_pairs() {
        let names = ["a", "b", "name"];
        let (m, u) = ([M, M, M], [U_RARE, U_RARE, U]);
        let (all, share) = (1_000_000.0, 0.01);
        let matches = |c: usize| (all * share * m[c][2]) as usize;
        let others = |c: usize| (all * (1.0 - share) * u[c][2]) as usize;
        let mut rng = Rng(7);
        let by_a = pairs(
            "a",
            &names,
            (&m, &u),
            (matches(0), others(0)),
            Some(0),
            &mut rng,
        );
        let by_b = pairs(
            "b",
            &names,
            (&m, &u),
            (matches(1), others(1)),
            Some(1),
            &mut rng,
        );
        let random = pairs("", &names, (&m, &u), (0, 200_000), None, &mut rng);
        let sessions = [by_a, by_b];
        let fixed = Fixed::parse("a: a; b: cmp_b").expect("fixed");
        assert_eq!(
            fixed,
            Fixed::PerRule(BTreeMap::from([
                ("a".into(), vec!["a".into()]),
                ("b".into(), vec!["b".into()])
            ]))
        );

        let counted = train(
            "pairs",
            &sessions,
            std::slice::from_ref(&random),
            &fixed,
            Some(all),
        )
        .expect("train");
        let p = prior(&counted);
        assert!(
            (p - share).abs() < share * 0.1,
            "prior with the pair count: {p}"
        );
        // a's m is learnt in b's session and the reverse; name's in both.
        let model = Model::from_batches("model", &[counted]).expect("model");
        for c in names {
            let (m2, _) = model.levels[c][&2];
            assert!((m2 - 0.8).abs() < 0.05, "{c}: m {m2}");
        }

        let odds = train(
            "pairs",
            &sessions,
            std::slice::from_ref(&random),
            &fixed,
            None,
        )
        .expect("train");
        let p = prior(&odds);
        assert!((p - share).abs() < share * 0.3, "prior from u: {p}");

        // One session alone, its fixed comparison learnt nowhere: m(pass) is taken as 1,
        // so the prior is low by m_a(2) = 0.8 at most.
        let alone = train(
            "pairs",
            &sessions[..1],
            &[random],
            &Fixed::Every(vec!["a".into()]),
            Some(all),
        )
        .expect("train");
        let p = prior(&alone);
        assert!(p > share * 0.7 && p < share * 0.9, "one session: {p}");
        let m_col = alone.column(2).as_primitive::<Float64Type>();
        let comparison = alone.column(0).as_string::<i32>();
        for i in 0..alone.num_rows() {
            assert_eq!(m_col.is_null(i), comparison.value(i) == "a", "row {i}");
        }
    }

    #[test]
    fn bad_input_is_named() {
        let none = Fixed::Every(vec![]);
        let e = train("p", &[], &[], &none, None)
            .expect_err("no pairs")
            .to_string();
        assert!(e.contains("no pairs"), "{e}");
        let mut rng = Rng(3);
        let b = pairs("", &["x"], (&[M], &[U]), (1, 1), None, &mut rng);
        let e = train(
            "p",
            std::slice::from_ref(&b),
            &[],
            &Fixed::Every(vec!["y".into()]),
            None,
        )
        .expect_err("unknown fixed")
        .to_string();
        assert!(e.contains("cmp_y"), "{e}");
        let e = train("p", &[b], &[], &none, Some(0.0))
            .expect_err("no pairs to choose from")
            .to_string();
        assert!(e.contains("at least 1"), "{e}");
        assert!(Fixed::parse("a: x; a: y").is_err_and(|e| e.contains("twice")));
        assert!(Fixed::parse("a: x; y").is_err_and(|e| e.contains("names no rule")));
    }
}
