//! Reading function arguments and building results, shared by every function here.
//!
//! The functions' signatures coerce text arguments to one of Arrow's three string types
//! (`Utf8`, `LargeUtf8`, `Utf8View`), so each argument arrives as a scalar or an array of
//! one of those. [`Strings`] hides which, giving per-row `Option<&str>` access with a
//! scalar broadcast to every row. [`build_utf8`] and [`build_primitive`] then run a
//! per-row closure once per row into an Arrow builder, reusing one `String` buffer so a
//! row costs no allocation of its own, and return a scalar when every argument was one.
//! [`coerce_optional_args`] is the type check of the functions with an optional argument.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, LargeStringArray, PrimitiveBuilder, StringArray,
    StringBuilder, StringViewArray,
};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, DataType};
use datafusion::common::{internal_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::ColumnarValue;

/// One text argument of a function call: a scalar or an array of any Arrow string type.
#[derive(Debug)]
pub(crate) enum Strings<'a> {
    Scalar(Option<&'a str>),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
}

impl<'a> Strings<'a> {
    /// Wrap `arg`, the argument of `function` at `position` (0-based, for messages).
    ///
    /// `number_rows` is the batch size: an array of any other length is a bug upstream.
    pub(crate) fn try_new(
        function: &str,
        position: usize,
        arg: &'a ColumnarValue,
        number_rows: usize,
    ) -> Result<Self> {
        match arg {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v),
            ) => Ok(Self::Scalar(v.as_deref())),
            ColumnarValue::Scalar(ScalarValue::Null) => Ok(Self::Scalar(None)),
            ColumnarValue::Scalar(other) => internal_err!(
                "{function}: argument {} has type {}, the signature should have made it text",
                position + 1,
                other.data_type()
            ),
            ColumnarValue::Array(array) => {
                if array.len() != number_rows {
                    return internal_err!(
                        "{function}: argument {} has {} rows in a batch of {number_rows}",
                        position + 1,
                        array.len()
                    );
                }
                Self::from_array(function, position, array)
            }
        }
    }

    fn from_array(function: &str, position: usize, array: &'a ArrayRef) -> Result<Self> {
        match array.data_type() {
            DataType::Utf8 => Ok(Self::Utf8(array.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(Self::LargeUtf8(array.as_string::<i64>())),
            DataType::Utf8View => Ok(Self::Utf8View(array.as_string_view())),
            // An all-NULL column is the same as a NULL scalar for a strict function.
            DataType::Null => Ok(Self::Scalar(None)),
            other => internal_err!(
                "{function}: argument {} has type {other}, the signature should have made it text",
                position + 1
            ),
        }
    }

    /// The value at `row`, `None` for NULL. A scalar answers for every row.
    #[inline]
    pub(crate) fn get(&self, row: usize) -> Option<&'a str> {
        match self {
            Self::Scalar(v) => *v,
            Self::Utf8(a) => a.is_valid(row).then(|| a.value(row)),
            Self::LargeUtf8(a) => a.is_valid(row).then(|| a.value(row)),
            Self::Utf8View(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

/// One boolean argument of a function call: a scalar or a `Boolean` array.
#[derive(Debug)]
pub(crate) enum Bools<'a> {
    Scalar(Option<bool>),
    Array(&'a BooleanArray),
}

impl<'a> Bools<'a> {
    /// Wrap `arg`, the argument of `function` at `position` (0-based, for messages).
    pub(crate) fn try_new(
        function: &str,
        position: usize,
        arg: &'a ColumnarValue,
        number_rows: usize,
    ) -> Result<Self> {
        match arg {
            ColumnarValue::Scalar(ScalarValue::Boolean(v)) => Ok(Self::Scalar(*v)),
            ColumnarValue::Scalar(ScalarValue::Null) => Ok(Self::Scalar(None)),
            ColumnarValue::Array(array) if array.len() != number_rows => internal_err!(
                "{function}: argument {} has {} rows in a batch of {number_rows}",
                position + 1,
                array.len()
            ),
            ColumnarValue::Array(array) => match array.data_type() {
                DataType::Boolean => Ok(Self::Array(array.as_boolean())),
                DataType::Null => Ok(Self::Scalar(None)),
                other => internal_err!(
                    "{function}: argument {} has type {other}, the signature should have made it boolean",
                    position + 1
                ),
            },
            ColumnarValue::Scalar(other) => internal_err!(
                "{function}: argument {} has type {}, the signature should have made it boolean",
                position + 1,
                other.data_type()
            ),
        }
    }

    /// The value at `row`, `None` for NULL. A scalar answers for every row.
    #[inline]
    pub(crate) fn get(&self, row: usize) -> Option<bool> {
        match self {
            Self::Scalar(v) => *v,
            Self::Array(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

/// What one argument of a function with optional arguments accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgKind {
    Text,
    Boolean,
}

/// `coerce_types` of a function whose trailing arguments are optional.
///
/// Such functions use a user-defined signature rather than `Signature::one_of` over
/// coercible ones: a call matching no alternative of `one_of` fails with an error that
/// calls itself an internal DataFusion bug, where a wrong call deserves a plan error
/// saying what the function takes (`usage`). Text arguments are accepted as `Utf8`,
/// `LargeUtf8` or `Utf8View` (dictionary-encoded ones decoded, NULL as `Utf8`), as a
/// coercible string signature would.
pub(crate) fn coerce_optional_args(
    function: &str,
    usage: &str,
    arg_types: &[DataType],
    kinds: &[ArgKind],
    required: usize,
) -> Result<Vec<DataType>> {
    if arg_types.len() < required || arg_types.len() > kinds.len() {
        return plan_err!(
            "{function} takes {usage}, but was called with {} argument(s)",
            arg_types.len()
        );
    }
    arg_types
        .iter()
        .zip(kinds)
        .enumerate()
        .map(|(i, (given, kind))| {
            let value = match given {
                DataType::Dictionary(_, value) => value.as_ref(),
                other => other,
            };
            match (kind, value) {
                (ArgKind::Text, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {
                    Ok(value.clone())
                }
                (ArgKind::Text, DataType::Null) => Ok(DataType::Utf8),
                (ArgKind::Boolean, DataType::Boolean | DataType::Null) => Ok(DataType::Boolean),
                (ArgKind::Text, _) => {
                    plan_err!("{function}: argument {} must be text, not {given}", i + 1)
                }
                (ArgKind::Boolean, _) => {
                    plan_err!(
                        "{function}: argument {} must be a boolean, not {given}",
                        i + 1
                    )
                }
            }
        })
        .collect()
}

/// True when every argument is a scalar, so the result is one scalar too.
pub(crate) fn all_scalar(args: &[ColumnarValue]) -> bool {
    args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)))
}

/// Build a `Utf8` result by calling `row(i, buffer)` for each row.
///
/// `row` writes the value into `buffer` (handed over empty) and returns `Ok(true)`, or
/// returns `Ok(false)` for a NULL. With `scalar` set only row 0 is computed and a scalar
/// is returned.
pub(crate) fn build_utf8(
    scalar: bool,
    number_rows: usize,
    mut row: impl FnMut(usize, &mut String) -> Result<bool>,
) -> Result<ColumnarValue> {
    let mut buffer = String::new();
    if scalar {
        let value = row(0, &mut buffer)?.then_some(buffer);
        return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value)));
    }
    // Identity values (emails, names, codes) are short: 16 bytes a row is a fair first guess.
    let mut builder = StringBuilder::with_capacity(number_rows, number_rows.saturating_mul(16));
    for i in 0..number_rows {
        buffer.clear();
        if row(i, &mut buffer)? {
            builder.append_value(&buffer);
        } else {
            builder.append_null();
        }
    }
    Ok(ColumnarValue::Array(Arc::new(builder.finish())))
}

/// Build a primitive result (`Float64`, `Int64`, ...) by calling `row(i)` for each row;
/// `Ok(None)` is a NULL. With `scalar` set only row 0 is computed and a scalar returned.
pub(crate) fn build_primitive<T: ArrowPrimitiveType>(
    scalar: bool,
    number_rows: usize,
    mut row: impl FnMut(usize) -> Result<Option<T::Native>>,
) -> Result<ColumnarValue> {
    if scalar {
        let value = row(0)?;
        return Ok(ColumnarValue::Scalar(ScalarValue::new_primitive::<T>(
            value,
            &T::DATA_TYPE,
        )?));
    }
    let mut builder = PrimitiveBuilder::<T>::with_capacity(number_rows);
    for i in 0..number_rows {
        builder.append_option(row(i)?);
    }
    Ok(ColumnarValue::Array(Arc::new(builder.finish())))
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Calling a function the way DataFusion's executor does, for the unit tests.

    use std::sync::Arc;

    use datafusion::arrow::array::{Array, ArrayRef, AsArray};
    use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
    use datafusion::common::config::ConfigOptions;
    use datafusion::common::{Result, ScalarValue};
    use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl};

    /// Invoke `udf` on `args` over a batch of `number_rows` rows.
    pub(crate) fn invoke(
        udf: &dyn ScalarUDFImpl,
        args: Vec<ColumnarValue>,
        number_rows: usize,
    ) -> Result<ColumnarValue> {
        let arg_fields = args
            .iter()
            .enumerate()
            .map(|(i, a)| Arc::new(Field::new(format!("a{i}"), a.data_type(), true)))
            .collect::<Vec<_>>();
        let types = args.iter().map(|a| a.data_type()).collect::<Vec<_>>();
        let return_type = udf.return_type(&types)?;
        udf.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows,
            return_field: Arc::new(Field::new("r", return_type, true)),
            config_options: Arc::new(ConfigOptions::default()),
        })
    }

    /// A text scalar.
    pub(crate) fn text(v: Option<&str>) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Utf8(v.map(str::to_owned)))
    }

    /// Invoke `udf` on text scalars and return its text result.
    pub(crate) fn call_text(udf: &dyn ScalarUDFImpl, args: &[Option<&str>]) -> Option<String> {
        let args = args.iter().map(|a| text(*a)).collect();
        match invoke(udf, args, 1) {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(v))) => v,
            other => panic!("{}: expected a Utf8 scalar, got {other:?}", udf.name()),
        }
    }

    /// Invoke `udf` on text scalars and return its Float64 result.
    pub(crate) fn call_f64(udf: &dyn ScalarUDFImpl, args: &[Option<&str>]) -> Option<f64> {
        let args = args.iter().map(|a| text(*a)).collect();
        match invoke(udf, args, 1) {
            Ok(ColumnarValue::Scalar(ScalarValue::Float64(v))) => v,
            other => panic!("{}: expected a Float64 scalar, got {other:?}", udf.name()),
        }
    }

    /// Invoke `udf` on text scalars and return its Int64 result.
    pub(crate) fn call_i64(udf: &dyn ScalarUDFImpl, args: &[Option<&str>]) -> Option<i64> {
        let args = args.iter().map(|a| text(*a)).collect();
        match invoke(udf, args, 1) {
            Ok(ColumnarValue::Scalar(ScalarValue::Int64(v))) => v,
            other => panic!("{}: expected an Int64 scalar, got {other:?}", udf.name()),
        }
    }

    /// The rows of a result array as `Option<String>`, whatever its type.
    pub(crate) fn rows(result: ColumnarValue, number_rows: usize) -> Vec<Option<String>> {
        let array: ArrayRef = match result.into_array(number_rows) {
            Ok(a) => a,
            Err(e) => panic!("result does not make an array: {e}"),
        };
        (0..array.len())
            .map(|i| {
                if array.is_null(i) {
                    return None;
                }
                Some(match array.data_type() {
                    DataType::Utf8 => array.as_string::<i32>().value(i).to_owned(),
                    DataType::Float64 => {
                        format!("{:.6}", array.as_primitive::<Float64Type>().value(i))
                    }
                    DataType::Int64 => array.as_primitive::<Int64Type>().value(i).to_string(),
                    other => panic!("unexpected result type {other}"),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;
    use datafusion::arrow::datatypes::Float64Type;

    #[test]
    fn strings_read_every_string_type_and_broadcast_scalars() -> Result<()> {
        let values = vec![Some("a"), None, Some("c")];
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(values.clone())),
            Arc::new(LargeStringArray::from(values.clone())),
            Arc::new(StringViewArray::from(values.clone())),
        ];
        for array in arrays {
            let arg = ColumnarValue::Array(array);
            let strings = Strings::try_new("f", 0, &arg, 3)?;
            assert_eq!((0..3).map(|i| strings.get(i)).collect::<Vec<_>>(), values);
        }
        let scalar = ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some("x".into())));
        let strings = Strings::try_new("f", 0, &scalar, 3)?;
        assert_eq!(strings.get(2), Some("x"));
        Ok(())
    }

    #[test]
    fn strings_reject_a_wrong_type_or_length_without_panicking() {
        let int = ColumnarValue::Scalar(ScalarValue::Int64(Some(1)));
        assert!(Strings::try_new("f", 0, &int, 1).is_err());
        let short = ColumnarValue::Array(Arc::new(StringArray::from(vec!["a"])));
        assert!(Strings::try_new("f", 0, &short, 2).is_err());
        let bools = ColumnarValue::Array(Arc::new(StringArray::from(vec!["a"])));
        assert!(Bools::try_new("f", 1, &bools, 1).is_err());
    }

    #[test]
    fn optional_arguments_are_checked_with_plan_errors() -> Result<()> {
        let kinds = [ArgKind::Text, ArgKind::Boolean];
        let usage = "(text [, boolean])";
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::LargeUtf8));
        assert_eq!(
            coerce_optional_args("f", usage, &[dict], &kinds, 1)?,
            vec![DataType::LargeUtf8]
        );
        assert_eq!(
            coerce_optional_args("f", usage, &[DataType::Null, DataType::Null], &kinds, 1)?,
            vec![DataType::Utf8, DataType::Boolean]
        );
        for bad in [
            vec![],
            vec![DataType::Utf8, DataType::Boolean, DataType::Utf8],
            vec![DataType::Int64],
            vec![DataType::Utf8, DataType::Utf8],
        ] {
            let err = coerce_optional_args("f", usage, &bad, &kinds, 1).expect_err("bad call");
            assert!(
                matches!(err, datafusion::common::DataFusionError::Plan(_)),
                "{err}"
            );
        }
        Ok(())
    }

    #[test]
    fn builders_return_a_scalar_only_for_scalar_calls() -> Result<()> {
        let out = build_utf8(true, 5, |_, buf| {
            buf.push('v');
            Ok(true)
        })?;
        assert!(matches!(out, ColumnarValue::Scalar(ScalarValue::Utf8(Some(ref v))) if v == "v"));

        let out = build_utf8(false, 3, |i, buf| {
            buf.push_str(&i.to_string());
            Ok(i != 1)
        })?;
        let ColumnarValue::Array(array) = out else {
            panic!("expected an array");
        };
        let array = array.as_string::<i32>();
        assert_eq!(
            array.iter().collect::<Vec<_>>(),
            vec![Some("0"), None, Some("2")]
        );

        let out = build_primitive::<Float64Type>(false, 2, |i| Ok((i == 0).then_some(0.5)))?;
        let ColumnarValue::Array(array) = out else {
            panic!("expected an array");
        };
        let expected = Float64Array::from(vec![Some(0.5), None]);
        assert_eq!(array.as_primitive::<Float64Type>(), &expected);
        Ok(())
    }
}
