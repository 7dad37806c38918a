//! `json_get_text(json, key)`, also written `json ->> key`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::types::logical_string;
use datafusion::common::Result;
use datafusion::logical_expr::{
    Coercion, ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignatureClass, Volatility,
};
use datafusion_macros::user_doc;

#[user_doc(
    doc_section(label = "JSON Functions"),
    description = r#"Returns a member of a JSON object, or an element of a JSON array, as text: PostgreSQL's `->>` operator, which may be used instead (`traits ->> 'email'`). Strings come without their quotes; numbers, booleans, objects and arrays as their JSON text.

`key` names an object member; for an array it is an index (0 is the first element, -1 the last). The result is NULL when the member or element is missing, is JSON `null`, or the value is neither an object nor an array; NULL in either argument gives NULL. Text that is not JSON is an error. Chain calls (or operators) to reach nested values: `context -> 'page' ->> 'url'`."#,
    syntax_example = "json_get_text(json, key)",
    sql_example = r#"```sql
> SELECT json_get_text('{"email": "ann@example.org", "plan": {"tier": 2}}', 'email') AS email, '{"plan": {"tier": 2}}' -> 'plan' ->> 'tier' AS tier;
+-----------------+------+
| email           | tier |
+-----------------+------+
| ann@example.org | 2    |
+-----------------+------+
```"#,
    argument(name = "json", description = "A text expression holding JSON."),
    argument(
        name = "key",
        description = "The member name, or for an array the element's index (as text or a number)."
    )
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonGetTextFunc {
    signature: Signature,
}

impl Default for JsonGetTextFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonGetTextFunc {
    pub fn new() -> Self {
        Self {
            signature: text_and_key_signature(),
        }
    }
}

/// (text, text-or-integer key), both read as text.
pub(super) fn text_and_key_signature() -> Signature {
    let text = || {
        Coercion::new_implicit(
            TypeSignatureClass::Native(logical_string()),
            vec![TypeSignatureClass::Integer],
            datafusion::common::types::NativeType::String,
        )
    };
    Signature::coercible(vec![text(), text()], Volatility::Immutable)
}

impl ScalarUDFImpl for JsonGetTextFunc {
    fn name(&self) -> &str {
        "json_get_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn is_strict(&self) -> bool {
        true
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        super::get(self.name(), &args.args, args.number_rows, true)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}
