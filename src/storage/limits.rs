//! Declared lengths of text columns: `varchar(n)` and `char(n)`.
//!
//! A managed table stores text as Arrow `Utf8` whatever its declared type, so the length
//! is kept beside it (in the catalog) and checked here on every write, as PostgreSQL
//! checks it on assignment: a value longer than `n` characters is an error (SQLSTATE
//! 22001, `value too long for type character varying(20)`), unless what passes `n` is
//! only spaces, which are cut off. `char(n)` values are kept as written, not padded with
//! blanks to `n` (PostgreSQL pads them, and ignores the padding when comparing).

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::{Deserialize, Serialize};

use crate::engine::error::EngineError;

/// A text column's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TextLimit {
    /// At most this many characters.
    pub length: u32,
    /// `char(n)` (`bpchar`) rather than `varchar(n)`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blank_padded: bool,
}

impl TextLimit {
    /// The type as PostgreSQL names it: `character varying(20)`, `character(3)`.
    pub fn type_name(&self) -> String {
        match self.blank_padded {
            true => format!("character({})", self.length),
            false => format!("character varying({})", self.length),
        }
    }

    /// PostgreSQL's type oid (`bpchar` 1042, `varchar` 1043) and type modifier (the
    /// length plus 4), as `pg_attribute` reports them.
    pub fn pg_type(&self) -> (i32, i32) {
        let oid = if self.blank_padded { 1042 } else { 1043 };
        (oid, self.length as i32 + 4)
    }

    /// `value` as stored: itself, or without the spaces past the limit; an error if
    /// anything else is past it.
    pub fn fit<'a>(&self, value: &'a str) -> Result<Cow<'a, str>, EngineError> {
        let n = self.length as usize;
        if value.len() <= n {
            return Ok(Cow::Borrowed(value));
        }
        match value.char_indices().nth(n) {
            None => Ok(Cow::Borrowed(value)),
            Some((end, _)) if value[end..].bytes().all(|b| b == b' ') => {
                Ok(Cow::Owned(value[..end].to_string()))
            }
            Some(_) => Err(EngineError::ValueTooLong {
                type_name: self.type_name(),
                context: String::new(),
            }),
        }
    }

    /// `array` (text) with every value fitted; the same array when none changes.
    fn fit_array(&self, array: &ArrayRef) -> Result<ArrayRef, EngineError> {
        Ok(match array.data_type() {
            DataType::Utf8 => match self.fit_all(array.as_string::<i32>().iter())? {
                Some(v) => Arc::new(v.into_iter().collect::<StringArray>()),
                None => array.clone(),
            },
            DataType::LargeUtf8 => match self.fit_all(array.as_string::<i64>().iter())? {
                Some(v) => Arc::new(v.into_iter().collect::<LargeStringArray>()),
                None => array.clone(),
            },
            DataType::Utf8View => match self.fit_all(array.as_string_view().iter())? {
                Some(v) => Arc::new(v.into_iter().collect::<StringViewArray>()),
                None => array.clone(),
            },
            _ => array.clone(),
        })
    }

    /// The row of the first value of `array` (text) that does not fit.
    pub fn first_too_long(&self, array: &ArrayRef) -> Option<usize> {
        let too_long = |v: Option<&str>| v.is_some_and(|v| self.fit(v).is_err());
        match array.data_type() {
            DataType::Utf8 => array.as_string::<i32>().iter().position(too_long),
            DataType::LargeUtf8 => array.as_string::<i64>().iter().position(too_long),
            DataType::Utf8View => array.as_string_view().iter().position(too_long),
            _ => None,
        }
    }

    /// Each of `values` fitted, or `None` when every one fits as it is.
    fn fit_all<'a>(
        &self,
        values: impl Iterator<Item = Option<&'a str>> + Clone,
    ) -> Result<Option<Vec<Option<Cow<'a, str>>>>, EngineError> {
        let mut changed = false;
        for v in values.clone().flatten() {
            changed |= matches!(self.fit(v)?, Cow::Owned(_));
        }
        if !changed {
            return Ok(None);
        }
        values
            .map(|v| v.map(|v| self.fit(v)).transpose())
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// `batch` with each limited column's values fitted to its limit (columns by index).
pub fn fit_batch(
    batch: RecordBatch,
    limits: &[(usize, TextLimit)],
) -> Result<RecordBatch, EngineError> {
    if limits.is_empty() {
        return Ok(batch);
    }
    let mut columns = batch.columns().to_vec();
    for (i, limit) in limits {
        if let Some(column) = columns.get_mut(*i) {
            *column = limit.fit_array(column)?;
        }
    }
    RecordBatch::try_new(batch.schema(), columns)
        .map_err(|e| EngineError::DataFusion(DataFusionError::ArrowError(Box::new(e), None)))
}

/// `value` (an `UPDATE`'s new value for a limited column) fitted to `limit` when it is
/// computed.
pub fn fit_expr(value: Expr, limit: TextLimit) -> Expr {
    ScalarUDF::new_from_impl(Fit {
        limit,
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
    })
    .call(vec![value])
}

/// The length error inside `e`, an `UPDATE` that failed in Delta's evaluation of
/// [`fit_expr`] (Delta keeps only the message of the error).
pub fn too_long(e: &deltalake::DeltaTableError) -> Option<EngineError> {
    let message = e.to_string();
    let (_, type_name) = message.split_once(TOO_LONG)?;
    Some(EngineError::ValueTooLong {
        type_name: type_name.trim().to_string(),
        context: String::new(),
    })
}

/// How [`EngineError::ValueTooLong`]'s message starts.
const TOO_LONG: &str = "value too long for type ";

#[derive(Debug, PartialEq, Eq, Hash)]
struct Fit {
    limit: TextLimit,
    signature: Signature,
}

impl ScalarUDFImpl for Fit {
    fn name(&self) -> &str {
        "fit_text_length"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let fitted = |e: EngineError| DataFusionError::External(Box::new(e));
        match args.args.into_iter().next() {
            Some(ColumnarValue::Array(a)) => Ok(ColumnarValue::Array(
                self.limit.fit_array(&a).map_err(fitted)?,
            )),
            Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(v)))) => Ok(ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(self.limit.fit(&v).map_err(fitted)?.into_owned())),
            )),
            Some(other) => Ok(other),
            None => Err(DataFusionError::Internal(
                "fit_text_length takes one argument".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARCHAR3: TextLimit = TextLimit {
        length: 3,
        blank_padded: false,
    };

    #[test]
    fn values_fit_or_fail_as_in_postgres() {
        assert_eq!(VARCHAR3.fit("abc").ok(), Some(Cow::Borrowed("abc")));
        // Characters, not bytes.
        assert_eq!(VARCHAR3.fit("äöü").ok(), Some(Cow::Borrowed("äöü")));
        // Spaces past the limit are cut off.
        assert_eq!(
            VARCHAR3.fit("ab   ").ok(),
            Some(Cow::Owned("ab ".to_string()))
        );
        let err = VARCHAR3.fit("abcd").expect_err("too long");
        assert_eq!(
            err.to_string(),
            "value too long for type character varying(3)"
        );
        let char3 = TextLimit {
            length: 3,
            blank_padded: true,
        };
        assert_eq!(char3.pg_type(), (1042, 7));
        assert_eq!(VARCHAR3.pg_type(), (1043, 7));
        assert!(char3.fit("äbcd").is_err());
    }

    #[test]
    fn batches_are_fitted_column_by_column() {
        let names: ArrayRef = Arc::new(StringArray::from(vec![Some("ab"), None, Some("xyz  ")]));
        let other: ArrayRef = Arc::new(StringArray::from(vec!["long text", "b", "c"]));
        let batch = RecordBatch::try_from_iter(vec![("n", names), ("o", other)]).expect("batch");
        let fitted = fit_batch(batch.clone(), &[(0, VARCHAR3)]).expect("fits");
        let n = fitted.column(0).as_string::<i32>();
        assert_eq!(
            n.iter().collect::<Vec<_>>(),
            vec![Some("ab"), None, Some("xyz")]
        );
        assert_eq!(fitted.column(1), batch.column(1));
        assert!(fit_batch(batch, &[(1, VARCHAR3)]).is_err());
    }
}
