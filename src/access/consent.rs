//! Consent: who agreed to what, as the engine checks it.
//!
//! The model's `consent_state` relation (unified_id, purpose, granted), one row per
//! person and purpose with the latest change winning, is the source of truth. The engine
//! keeps an in-memory index of its granted pairs, reloaded whenever `consent_state` is
//! refreshed (and at start-up), and answers `consent_allows(unified_id, purpose)` from
//! it: true only when the person's latest change for that purpose granted it. No
//! record, a withdrawal, or a NULL argument is false: consent is never presumed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use twox_hash::XxHash3_128;

/// The relation consent is read from.
pub const CONSENT_RELATION: &str = "consent_state";

/// The granted (person, purpose) pairs, by purpose; people as 128-bit hashes.
#[derive(Debug, Default)]
pub struct ConsentIndex {
    granted: RwLock<HashMap<String, HashSet<u128>>>,
}

fn person(unified_id: &str) -> u128 {
    XxHash3_128::oneshot(unified_id.as_bytes())
}

impl ConsentIndex {
    /// Replace the index with `pairs` (unified_id, purpose) that are granted.
    pub fn replace<'a>(&self, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
        let mut granted: HashMap<String, HashSet<u128>> = HashMap::new();
        for (id, purpose) in pairs {
            granted
                .entry(purpose.to_string())
                .or_default()
                .insert(person(id));
        }
        *self.granted.write().unwrap_or_else(|e| e.into_inner()) = granted;
    }

    pub fn allows(&self, unified_id: &str, purpose: &str) -> bool {
        self.granted
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(purpose)
            .is_some_and(|people| people.contains(&person(unified_id)))
    }
}

/// `consent_allows(unified_id, purpose)`.
#[derive(Debug)]
pub struct ConsentAllows {
    index: Arc<ConsentIndex>,
    signature: Signature,
}

impl PartialEq for ConsentAllows {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.index, &other.index)
    }
}
impl Eq for ConsentAllows {}
impl std::hash::Hash for ConsentAllows {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.index) as usize).hash(state)
    }
}

impl ConsentAllows {
    pub fn udf(index: Arc<ConsentIndex>) -> ScalarUDF {
        ScalarUDF::from(ConsentAllows {
            index,
            signature: Signature::string(2, Volatility::Volatile),
        })
    }
}

impl ScalarUDFImpl for ConsentAllows {
    fn name(&self) -> &str {
        "consent_allows"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let ids = args.args[0].to_array(n)?;
        let purposes = args.args[1].to_array(n)?;
        let ids = datafusion::arrow::compute::cast(&ids, &DataType::Utf8)?;
        let purposes = datafusion::arrow::compute::cast(&purposes, &DataType::Utf8)?;
        let ids = datafusion::common::cast::as_string_array(&ids)?;
        let purposes = datafusion::common::cast::as_string_array(&purposes)?;
        let out: BooleanArray = ids
            .iter()
            .zip(purposes.iter())
            .map(|(id, p)| Some(matches!((id, p), (Some(id), Some(p)) if self.index.allows(id, p))))
            .collect();
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(
                out.value(0),
            ))));
        }
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
