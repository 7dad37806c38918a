//! `nysiis(text)`: the NYSIIS phonetic code of a name.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::types::logical_string;
use datafusion::common::utils::take_function_args;
use datafusion::common::Result;
use datafusion::logical_expr::{
    Coercion, ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignatureClass, Volatility,
};
use datafusion_macros::user_doc;
use rphonetic::{Encoder, Nysiis};

use super::encodable_letters;
use crate::args::{all_scalar, build_utf8, Strings};

#[user_doc(
    doc_section(label = "Phonetic Functions"),
    description = r#"Returns the NYSIIS (New York State Identification and Intelligence System) code of a name, at most 6 letters, as in the original specification. NYSIIS keeps vowel positions and is more selective than Soundex (`Knight` and `Night` are both `NAGT`).

Accented Latin letters are folded to ASCII first and everything but ASCII letters is ignored, words run together. NULL is returned when no letter is left (empty input, digits, other scripts)."#,
    syntax_example = "nysiis(name)",
    sql_example = r#"```sql
> SELECT nysiis('Knight') AS knight, nysiis('Night') AS night, nysiis('Macintosh') AS macintosh;
+--------+-------+-----------+
| knight | night | macintosh |
+--------+-------+-----------+
| NAGT   | NAGT  | MCANT     |
+--------+-------+-----------+
```"#,
    argument(name = "name", description = "Name to encode: a text expression.")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NysiisFunc {
    signature: Signature,
}

impl Default for NysiisFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl NysiisFunc {
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

impl ScalarUDFImpl for NysiisFunc {
    fn name(&self) -> &str {
        "nysiis"
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
        // Strict: codes truncated to 6 letters, as the original specification has them.
        let encoder = Nysiis::new(true);
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

    use datafusion::arrow::array::StringArray;

    use super::*;
    use crate::args::test_util::{call_text, invoke, rows};

    fn code(input: &str) -> Option<String> {
        call_text(&NysiisFunc::new(), &[Some(input)])
    }

    #[test]
    fn known_codes() {
        for (name, expected) in [
            ("Knight", "NAGT"),
            ("Night", "NAGT"),
            ("Macintosh", "MCANT"),
            ("Schmidt", "SNAD"),
            ("Phillipson", "FALAPS"),
            ("Brown", "BRAN"),
            ("Browne", "BRAN"),
            ("Müller", "MALAR"),
        ] {
            assert_eq!(code(name).as_deref(), Some(expected), "{name}");
        }
    }

    #[test]
    fn no_letters_is_null_and_odd_input_does_not_panic() -> Result<()> {
        for none in ["", " ", "@@@", "42", "Иван", "😀"] {
            assert_eq!(code(none), None, "{none:?}");
        }
        assert_eq!(call_text(&NysiisFunc::new(), &[None]), None);
        for odd in [
            "a", "ee", "ie", "sch", "kn", "ph", "pf", "mac", "evs", "ay", "s", "h", "w",
        ] {
            assert!(code(odd).is_some(), "{odd}");
        }
        let long = "Wolfeschlegelsteinhausenbergerdorff".repeat(1_000);
        assert_eq!(code(&long).map(|c| c.len()), Some(6));
        let names = ColumnarValue::Array(Arc::new(StringArray::from(vec![None, Some("Brown")])));
        assert_eq!(
            rows(invoke(&NysiisFunc::new(), vec![names], 2)?, 2),
            vec![None, Some("BRAN".into())]
        );
        Ok(())
    }
}
