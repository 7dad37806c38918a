//! `json_get(json, key)`, also written `json -> key`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
};
use datafusion_macros::user_doc;

use super::get_text::text_and_key_signature;

#[user_doc(
    doc_section(label = "JSON Functions"),
    description = r#"Returns a member of a JSON object, or an element of a JSON array, as JSON text: PostgreSQL's `->` operator, which may be used instead (`context -> 'page'`). A string member keeps its quotes; use `json_get_text` (`->>`) for the bare value.

`key` names an object member; for an array it is an index (0 is the first element, -1 the last). The result is NULL when the member or element is missing or the value is neither an object nor an array (JSON `null` gives the text `null`); NULL in either argument gives NULL. Text that is not JSON is an error."#,
    syntax_example = "json_get(json, key)",
    sql_example = r#"```sql
> SELECT json_get('{"page": {"url": "/cart"}, "tags": ["a", "b"]}', 'page') AS page, '["a", "b"]' -> -1 AS last;
+-----------------+------+
| page            | last |
+-----------------+------+
| {"url":"/cart"} | "b"  |
+-----------------+------+
```"#,
    argument(name = "json", description = "A text expression holding JSON."),
    argument(
        name = "key",
        description = "The member name, or for an array the element's index (as text or a number)."
    )
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonGetFunc {
    signature: Signature,
}

impl Default for JsonGetFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonGetFunc {
    pub fn new() -> Self {
        Self {
            signature: text_and_key_signature(),
        }
    }
}

impl ScalarUDFImpl for JsonGetFunc {
    fn name(&self) -> &str {
        "json_get"
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
        super::get(self.name(), &args.args, args.number_rows, false)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}
