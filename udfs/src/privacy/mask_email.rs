//! `mask_email(text)`: an email address with its local part hidden.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion_macros::user_doc;

use datafusion::arrow::datatypes::FieldRef;

use super::{map_text, same_presence, text_return_type};

#[user_doc(
    doc_section(label = "Privacy Functions"),
    description = r#"Masks an email address: the first character of the local part is kept, the rest of it becomes `***`, and the domain stays, so masked addresses still group by domain. Text without an `@` (or with nothing before it) becomes `***`. The result has the argument's string type.

Roles without the PII privilege see columns classified `pii:email` through this function."#,
    syntax_example = "mask_email(email)",
    sql_example = r#"```sql
> SELECT mask_email('anna.berg@example.com') AS email, mask_email('not an email') AS other;
+------------------+-------+
| email            | other |
+------------------+-------+
| a***@example.com | ***   |
+------------------+-------+
```"#,
    argument(name = "email", description = "Email address: a text expression.")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MaskEmailFunc {
    signature: Signature,
}

impl Default for MaskEmailFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl MaskEmailFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

/// The masked form of one address.
pub(crate) fn mask(email: &str, out: &mut String) {
    match email.split_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            out.extend(local.chars().next());
            out.push_str("***@");
            out.push_str(domain);
        }
        _ => out.push_str("***"),
    }
}

impl ScalarUDFImpl for MaskEmailFunc {
    fn name(&self) -> &str {
        "mask_email"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        text_return_type(self.name(), &arg_types[0])
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        same_presence(self.name(), &args)
    }

    fn is_strict(&self) -> bool {
        true
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_text(self.name(), &args, mask)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::test_util::call_text;

    #[test]
    fn keeps_first_character_and_domain() {
        let f = MaskEmailFunc::new();
        for (input, expected) in [
            ("anna.berg@example.com", "a***@example.com"),
            ("Ö@x.de", "Ö***@x.de"),
            ("@example.com", "***"),
            ("no at sign", "***"),
            ("", "***"),
        ] {
            assert_eq!(call_text(&f, &[Some(input)]).as_deref(), Some(expected));
        }
        assert_eq!(call_text(&f, &[None]), None);
    }
}
