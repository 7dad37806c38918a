//! `json_build_object(key, value, ...)`: PostgreSQL's JSON object constructor.

use std::fmt::Write;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion_macros::user_doc;

#[user_doc(
    doc_section(label = "JSON Functions"),
    description = r#"Builds a JSON object from alternating keys and values, as PostgreSQL's `json_build_object` does, and returns its text (`{"key" : value, ...}`, PostgreSQL's spacing).

Keys are converted to text. Values keep their JSON type: numbers and booleans as they are, NULL as `null`, lists as arrays, structs as objects, and everything else (text, dates, timestamps) as JSON strings. An odd number of arguments, or a NULL key, is an error (22023 / 22004 in PostgreSQL). Without arguments the result is `{}`."#,
    syntax_example = "json_build_object(key1, value1 [, key2, value2 ...])",
    sql_example = r#"```sql
> SELECT json_build_object('email', 'ann@example.org', 'orders', 3, 'vip', true, 'phone', NULL) AS traits;
+---------------------------------------------------------------------------+
| traits                                                                    |
+---------------------------------------------------------------------------+
| {"email" : "ann@example.org", "orders" : 3, "vip" : true, "phone" : null} |
+---------------------------------------------------------------------------+
```"#,
    argument(name = "key", description = "A member name (any type, read as text)."),
    argument(name = "value", description = "The member's value (any type).")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonBuildObjectFunc {
    signature: Signature,
}

impl Default for JsonBuildObjectFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonBuildObjectFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObjectFunc {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !arg_types.len().is_multiple_of(2) {
            return plan_err!(
                "json_build_object: argument list must have even number of elements (got {})",
                arg_types.len()
            );
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let mut out = StringBuilder::new();
        let mut text = String::new();
        for row in 0..rows {
            text.clear();
            text.push('{');
            for (i, pair) in arrays.chunks(2).enumerate() {
                let [key, value] = pair else {
                    return exec_err!(
                        "json_build_object: argument list must have even number of elements"
                    );
                };
                let key = ScalarValue::try_from_array(key, row)?;
                if key.is_null() {
                    return exec_err!("json_build_object: null value not allowed for object key");
                }
                if i > 0 {
                    text.push_str(", ");
                }
                let key = match key {
                    ScalarValue::Utf8(Some(s))
                    | ScalarValue::Utf8View(Some(s))
                    | ScalarValue::LargeUtf8(Some(s)) => s,
                    other => other.to_string(),
                };
                write_string(&mut text, &key);
                text.push_str(" : ");
                write_value(&mut text, &ScalarValue::try_from_array(value, row)?)?;
            }
            text.push('}');
            out.append_value(&text);
        }
        let array: ArrayRef = std::sync::Arc::new(out.finish());
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(array))
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

/// `s` as a JSON string literal.
fn write_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::String(s.to_string()).to_string());
}

/// `v` as JSON: numbers and booleans bare, lists as arrays, structs as objects, the rest
/// as strings of their text.
fn write_value(out: &mut String, v: &ScalarValue) -> Result<()> {
    if v.is_null() {
        out.push_str("null");
        return Ok(());
    }
    match v {
        ScalarValue::Boolean(Some(b)) => out.push_str(if *b { "true" } else { "false" }),
        ScalarValue::Float32(Some(f)) if f.is_finite() => write!(out, "{f}").expect("a String"),
        ScalarValue::Float64(Some(f)) if f.is_finite() => write!(out, "{f}").expect("a String"),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Decimal128(..)
        | ScalarValue::Decimal256(..) => out.push_str(&v.to_string()),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => write_string(out, s),
        ScalarValue::List(a) => write_list(out, a.value(0).as_ref())?,
        ScalarValue::LargeList(a) => write_list(out, a.value(0).as_ref())?,
        ScalarValue::FixedSizeList(a) => write_list(out, a.value(0).as_ref())?,
        ScalarValue::Struct(s) => {
            out.push('{');
            for (i, (field, column)) in s.fields().iter().zip(s.columns()).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, field.name());
                out.push_str(" : ");
                write_value(out, &ScalarValue::try_from_array(column, 0)?)?;
            }
            out.push('}');
        }
        // Dates, times, timestamps, intervals...: their text as Arrow displays it.
        other => {
            let array = other.to_array()?;
            let text = datafusion::arrow::util::display::array_value_to_string(&array, 0)?;
            write_string(out, &text)
        }
    }
    Ok(())
}

fn write_list(out: &mut String, items: &dyn Array) -> Result<()> {
    out.push('[');
    for i in 0..items.len() {
        if i > 0 {
            out.push_str(", ");
        }
        write_value(out, &ScalarValue::try_from_array(items, i)?)?;
    }
    out.push(']');
    Ok(())
}
