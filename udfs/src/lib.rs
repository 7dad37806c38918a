//! SQL functions of tessera.
//!
//! Each function lives in its own file, documents itself with DataFusion's `#[user_doc]`
//! and is registered by [`register_all`], which the server calls once on its
//! `SessionContext`. The identity-matching functions come in three groups:
//! [`normalize`] (one canonical form per email, phone, name and given name), [`similarity`]
//! (how alike two values are) and [`phonetic`] (codes for names that sound alike).
//! `args` holds what they share for reading arguments and building results, `fold` the
//! folding of names to ASCII tokens. The aggregate functions of [`survivorship`] build
//! golden records: which value of a profile's records survives. [`json`] reads JSON
//! text (`json_get`, `json_get_text` and the `->`, `->>` operators). [`privacy`] masks
//! personal data (`mask_email`, `mask_phone`, `redact`, `pseudonymize`). [`docs`] renders the
//! function reference, `FUNCTIONS.md`, from the functions' own documentation; a unit test
//! keeps the committed file in step, and another runs the `.slt` files under `slt/`
//! against a `SessionContext`.

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

mod args;
pub mod docs;
mod fold;
pub mod json;
pub mod normalize;
pub mod phonetic;
pub mod privacy;
pub mod similarity;
#[cfg(test)]
mod slt_runner;
pub mod survivorship;

/// Every tessera scalar function, in the order of the function reference.
pub fn all_scalar_udfs() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(normalize::NormalizeEmailFunc::new()),
        ScalarUDF::from(normalize::NormalizePhoneFunc::new()),
        ScalarUDF::from(normalize::NormalizeNameFunc::new()),
        ScalarUDF::from(normalize::NameRootFunc::new()),
        ScalarUDF::from(similarity::JaroWinklerFunc::new()),
        ScalarUDF::from(similarity::DamerauLevenshteinFunc::new()),
        ScalarUDF::from(similarity::TokenJaccardFunc::new()),
        ScalarUDF::from(phonetic::SoundexFunc::new()),
        ScalarUDF::from(phonetic::DoubleMetaphoneFunc::new()),
        ScalarUDF::from(phonetic::NysiisFunc::new()),
        ScalarUDF::from(json::JsonGetFunc::new()),
        ScalarUDF::from(json::JsonGetTextFunc::new()),
        ScalarUDF::from(json::JsonBuildObjectFunc::new()),
        ScalarUDF::from(privacy::MaskEmailFunc::new()),
        ScalarUDF::from(privacy::MaskPhoneFunc::new()),
        ScalarUDF::from(privacy::RedactFunc::new()),
        ScalarUDF::from(privacy::PseudonymizeFunc::default()),
    ]
}

/// Every tessera aggregate function, in the order of the function reference (after the
/// scalar functions).
pub fn all_aggregate_udfs() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::from(survivorship::LatestFunc::new()),
        AggregateUDF::from(survivorship::EarliestFunc::new()),
        AggregateUDF::from(survivorship::FirstByPriorityFunc::new()),
        AggregateUDF::from(survivorship::MostFrequentFunc::new()),
        AggregateUDF::from(survivorship::CollectDistinctFunc::new()),
    ]
}

/// Register every tessera SQL function, scalar and aggregate, on `ctx`.
pub fn register_all(ctx: &SessionContext) {
    for udf in all_scalar_udfs() {
        ctx.register_udf(udf);
    }
    for udaf in all_aggregate_udfs() {
        ctx.register_udaf(udaf);
    }
    use datafusion::execution::FunctionRegistry;
    let planner = std::sync::Arc::new(json::JsonOperators);
    if let Err(e) = ctx.state_ref().write().register_expr_planner(planner) {
        // Registering a planner cannot fail in DataFusion 55; the functions still work.
        eprintln!("cannot register the JSON operators: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_is_registered_and_documented() {
        let ctx = SessionContext::new();
        register_all(&ctx);
        let state = ctx.state();
        let udfs = all_scalar_udfs();
        assert_eq!(udfs.len(), 17);
        for udf in &udfs {
            assert!(
                state.scalar_functions().contains_key(udf.name()),
                "{} not registered",
                udf.name()
            );
            let doc = udf
                .documentation()
                .unwrap_or_else(|| panic!("{} has no documentation", udf.name()));
            assert!(doc.syntax_example.starts_with(udf.name()), "{}", udf.name());
            assert!(doc.sql_example.is_some(), "{} has no example", udf.name());
            assert!(
                doc.arguments.as_ref().is_some_and(|a| !a.is_empty()),
                "{}",
                udf.name()
            );
        }
        let udafs = all_aggregate_udfs();
        assert_eq!(udafs.len(), 5);
        for udaf in &udafs {
            assert!(
                state.aggregate_functions().contains_key(udaf.name()),
                "{} not registered",
                udaf.name()
            );
            let doc = udaf
                .documentation()
                .unwrap_or_else(|| panic!("{} has no documentation", udaf.name()));
            assert!(
                doc.syntax_example.starts_with(udaf.name()),
                "{}",
                udaf.name()
            );
            assert!(doc.sql_example.is_some(), "{} has no example", udaf.name());
        }
    }
}
