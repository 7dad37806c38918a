//! `soundex(text)`: the American Soundex code of a name.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::types::logical_string;
use datafusion::common::utils::take_function_args;
use datafusion::common::Result;
use datafusion::logical_expr::{
    Coercion, ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignatureClass, Volatility,
};
use datafusion_macros::user_doc;
use rphonetic::{Encoder, Soundex};

use super::encodable_letters;
use crate::args::{all_scalar, build_utf8, Strings};

#[user_doc(
    doc_section(label = "Phonetic Functions"),
    description = r#"Returns the American Soundex code of a name: its first letter and three digits for the consonant sounds that follow (`Robert` and `Rupert` are both `R163`). `H` and `W` do not separate consonants of the same code, as in the U.S. census rules.

Accented Latin letters are folded to ASCII first (`Müller` is `M460`) and everything but ASCII letters is ignored, words run together. NULL is returned when no letter is left (empty input, digits, other scripts)."#,
    syntax_example = "soundex(name)",
    sql_example = r#"```sql
> SELECT soundex('Robert') AS robert, soundex('Rupert') AS rupert, soundex('Ashcraft') AS ashcraft;
+--------+--------+----------+
| robert | rupert | ashcraft |
+--------+--------+----------+
| R163   | R163   | A261     |
+--------+--------+----------+
```"#,
    argument(name = "name", description = "Name to encode: a text expression.")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SoundexFunc {
    signature: Signature,
}

impl Default for SoundexFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl SoundexFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::coercible(
                vec![Coercion::new_exact(TypeSignatureClass::Native(
                    logical_string(),
                ))],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for SoundexFunc {
    fn name(&self) -> &str {
        "soundex"
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
        let scalar = all_scalar(&args.args);
        let [name] = take_function_args(self.name(), &args.args)?;
        let name = Strings::try_new(self.name(), 0, name, args.number_rows)?;
        let encoder = Soundex::default();
        let (mut folded, mut letters) = (String::new(), String::new());
        build_utf8(scalar, args.number_rows, |row, out| {
            let Some(name) = name.get(row) else {
                return Ok(false);
            };
            if !encodable_letters(name, &mut folded, &mut letters) {
                return Ok(false);
            }
            out.push_str(&encoder.encode(&letters));
            Ok(!out.is_empty())
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::LargeStringArray;

    use super::*;
    use crate::args::test_util::{call_text, invoke, rows};

    fn code(input: &str) -> Option<String> {
        call_text(&SoundexFunc::new(), &[Some(input)])
    }

    #[test]
    fn known_codes() {
        for (name, expected) in [
            ("Robert", "R163"),
            ("Rupert", "R163"),
            ("Rubin", "R150"),
            ("Ashcraft", "A261"),
            ("Ashcroft", "A261"),
            ("Tymczak", "T522"),
            ("Pfister", "P236"),
            ("Honeyman", "H555"),
            ("Lee", "L000"),
            ("Müller", "M460"),
            ("O'Brien", "O165"),
            ("  smith  ", "S530"),
        ] {
            assert_eq!(code(name).as_deref(), Some(expected), "{name}");
        }
    }

    #[test]
    fn no_letters_is_null() {
        for none in ["", " ", "@@@", "1234", "Иван", "😀"] {
            assert_eq!(code(none), None, "{none:?}");
        }
        assert_eq!(call_text(&SoundexFunc::new(), &[None]), None);
    }

    #[test]
    fn long_input_and_arrays() -> Result<()> {
        assert_eq!(code(&"Washington ".repeat(20_000)).as_deref(), Some("W252"));
        let names = ColumnarValue::Array(Arc::new(LargeStringArray::from(vec![
            Some("Tymczak"),
            None,
            Some("!"),
        ])));
        let out = invoke(&SoundexFunc::new(), vec![names], 3)?;
        assert_eq!(rows(out, 3), vec![Some("T522".into()), None, None]);
        Ok(())
    }
}
