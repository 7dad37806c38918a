//! `mask_phone(text)`: a phone number with all but its last two digits hidden.

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
    description = r#"Masks a phone number: every digit but the last two becomes `*`, a leading `+` stays and everything else (spaces, dashes, brackets) is dropped, so `+44 7700 900123` becomes `+**********23`. Text with fewer than three digits becomes `***`. The result has the argument's string type.

Roles without the PII privilege see columns classified `pii:phone` through this function."#,
    syntax_example = "mask_phone(phone)",
    sql_example = r#"```sql
> SELECT mask_phone('+44 7700 900123') AS phone, mask_phone('(030) 1234-56') AS local;
+---------------+-----------+
| phone         | local     |
+---------------+-----------+
| +**********23 | *******56 |
+---------------+-----------+
```"#,
    argument(name = "phone", description = "Phone number: a text expression.")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MaskPhoneFunc {
    signature: Signature,
}

impl Default for MaskPhoneFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl MaskPhoneFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

/// The masked form of one number.
pub(crate) fn mask(phone: &str, out: &mut String) {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 3 {
        out.push_str("***");
        return;
    }
    if phone.trim_start().starts_with('+') {
        out.push('+');
    }
    out.extend(std::iter::repeat_n('*', digits.len() - 2));
    out.extend(&digits[digits.len() - 2..]);
}

impl ScalarUDFImpl for MaskPhoneFunc {
    fn name(&self) -> &str {
        "mask_phone"
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
    fn keeps_last_two_digits() {
        let f = MaskPhoneFunc::new();
        for (input, expected) in [
            ("+44 7700 900123", "+**********23"),
            ("(030) 1234-56", "*******56"),
            ("12", "***"),
            ("", "***"),
        ] {
            assert_eq!(call_text(&f, &[Some(input)]).as_deref(), Some(expected));
        }
        assert_eq!(call_text(&f, &[None]), None);
    }
}
