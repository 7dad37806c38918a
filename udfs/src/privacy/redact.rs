//! `redact(value)`: a value hidden whole.

use datafusion::arrow::array::{new_null_array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::utils::take_function_args;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion_macros::user_doc;
use std::sync::Arc;

use super::as_string_type;

/// What a redacted text value reads as.
pub const REDACTED: &str = "[redacted]";

#[user_doc(
    doc_section(label = "Privacy Functions"),
    description = r#"Hides a value whole. Text becomes `[redacted]`; a value of any other type (a date of birth, a number, a list) becomes NULL. NULL stays NULL. The result has the argument's type.

Roles without the PII privilege see columns classified `pii` (or any `pii:` class other than `email`, `phone` and `id`) through this function."#,
    syntax_example = "redact(value)",
    sql_example = r#"```sql
> SELECT redact('Anna Berg') AS name, redact(DATE '1990-04-01') AS birth_date, redact(NULL) AS nothing;
+------------+------------+---------+
| name       | birth_date | nothing |
+------------+------------+---------+
| [redacted] |            |         |
+------------+------------+---------+
```"#,
    argument(
        name = "value",
        description = "Value to hide: an expression of any type."
    )
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RedactFunc {
    signature: Signature,
}

impl Default for RedactFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl RedactFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

impl ScalarUDFImpl for RedactFunc {
    fn name(&self) -> &str {
        "redact"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let arg = &args.arg_fields[0];
        // Text stays as present as it was; any other type becomes NULL.
        let nullable = arg.is_nullable() || !is_text(arg.data_type());
        Ok(Arc::new(Field::new(
            self.name(),
            arg.data_type().clone(),
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = take_function_args(self.name(), &args.args)?;
        let to = args.return_field.data_type();
        if !is_text(to) {
            return Ok(match value {
                ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from(to)?),
                ColumnarValue::Array(a) => ColumnarValue::Array(new_null_array(to, a.len())),
            });
        }
        let out = match value {
            ColumnarValue::Scalar(s) => ColumnarValue::Scalar(ScalarValue::Utf8(
                (!s.is_null()).then(|| REDACTED.to_owned()),
            )),
            ColumnarValue::Array(a) => {
                let redacted: StringArray = (0..a.len())
                    .map(|i| a.is_valid(i).then_some(REDACTED))
                    .collect();
                ColumnarValue::Array(Arc::new(redacted))
            }
        };
        as_string_type(out, to)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, Int64Array, StringViewArray};

    use super::*;
    use crate::args::test_util::{call_text, invoke};

    #[test]
    fn text_reads_redacted_other_types_null() -> Result<()> {
        let f = RedactFunc::new();
        assert_eq!(call_text(&f, &[Some("Anna")]).as_deref(), Some(REDACTED));
        assert_eq!(call_text(&f, &[None]), None);
        let numbers = ColumnarValue::Array(Arc::new(Int64Array::from(vec![Some(1), None])));
        let ColumnarValue::Array(out) = invoke(&f, vec![numbers], 2)? else {
            panic!("expected an array");
        };
        assert_eq!((out.data_type(), out.null_count()), (&DataType::Int64, 2));
        let views = ColumnarValue::Array(Arc::new(StringViewArray::from(vec![Some("a"), None])));
        let ColumnarValue::Array(out) = invoke(&f, vec![views], 2)? else {
            panic!("expected an array");
        };
        assert_eq!(out.data_type(), &DataType::Utf8View);
        assert!(out.is_valid(0) && out.is_null(1));
        Ok(())
    }
}
