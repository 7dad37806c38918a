//! Privacy functions: what a role without the PII privilege sees in place of personal
//! data. `mask_email` and `mask_phone` keep just enough to count and group by (the
//! email's domain, the phone's last two digits); `redact` hides a value whole;
//! `pseudonymize` replaces it with a keyed hash, stable within one installation, so
//! masked identifiers still join and count distinct.
//!
//! The server applies these functions itself, below every filter, join and aggregate,
//! to the columns classified as personal data (see the README, "Privacy"); they are also
//! ordinary SQL functions.

pub mod mask_email;
pub mod mask_phone;
pub mod pseudonymize;
pub mod redact;

pub use mask_email::MaskEmailFunc;
pub use mask_phone::MaskPhoneFunc;
pub use pseudonymize::{PseudonymizeFunc, Pseudonymizer};
pub use redact::RedactFunc;

use datafusion::arrow::compute::cast;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::utils::take_function_args;
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs};

use crate::args::{all_scalar, build_utf8, Strings};

/// `value` (built as `Utf8`) in the string type `to` the argument had, so that a masked
/// column keeps its type.
pub(crate) fn as_string_type(value: ColumnarValue, to: &DataType) -> Result<ColumnarValue> {
    match value {
        ColumnarValue::Array(a) if a.data_type() != to => Ok(ColumnarValue::Array(cast(&a, to)?)),
        ColumnarValue::Scalar(s) if &s.data_type() != to => {
            Ok(ColumnarValue::Scalar(s.cast_to(to)?))
        }
        same => Ok(same),
    }
}

/// The string type of a text argument (dictionaries decoded), `Utf8` for NULL.
pub(crate) fn text_return_type(function: &str, arg: &DataType) -> Result<DataType> {
    match arg {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(arg.clone()),
        DataType::Null => Ok(DataType::Utf8),
        other => datafusion::common::plan_err!("{function} takes text, not {other}"),
    }
}

/// The body of a strict text-to-text function: `f` writes the result for each non-NULL
/// value, and the result keeps the argument's string type.
pub(crate) fn map_text(
    function: &str,
    args: &ScalarFunctionArgs,
    mut f: impl FnMut(&str, &mut String),
) -> Result<ColumnarValue> {
    let scalar = all_scalar(&args.args);
    let [value] = take_function_args(function, &args.args)?;
    let values = Strings::try_new(function, 0, value, args.number_rows)?;
    let out = build_utf8(scalar, args.number_rows, |row, out| {
        let Some(value) = values.get(row) else {
            return Ok(false);
        };
        f(value, out);
        Ok(true)
    })?;
    as_string_type(out, args.return_field.data_type())
}

/// The result field of a strict text function: NULL exactly when its argument is, so a
/// masked column keeps the nullability of the column it masks.
pub(crate) fn same_presence(function: &str, args: &ReturnFieldArgs) -> Result<FieldRef> {
    let arg = &args.arg_fields[0];
    let t = text_return_type(function, arg.data_type())?;
    Ok(Arc::new(Field::new(function, t, arg.is_nullable())))
}
