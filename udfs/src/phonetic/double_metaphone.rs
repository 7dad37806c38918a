//! `double_metaphone(text [, alternate])`: the Double Metaphone code of a name.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::utils::take_function_args;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion_macros::user_doc;
use rphonetic::DoubleMetaphone;

use super::encodable_letters;
use crate::args::{all_scalar, build_utf8, coerce_optional_args, ArgKind, Bools, Strings};

#[user_doc(
    doc_section(label = "Phonetic Functions"),
    description = r#"Returns the Double Metaphone code of a name (at most 4 characters). Double Metaphone knows the spelling rules of many languages that English names come from; where a name has two plausible pronunciations it has two codes, the primary (returned by default) and the alternate (`alternate` true): `Schmidt` is `XMT` and `SMT`. Match on either code to catch both pronunciations.

Accented Latin letters are folded to ASCII first and everything but ASCII letters is ignored, words run together. NULL is returned when no letter is left (empty input, digits, other scripts), or when `alternate` is NULL."#,
    syntax_example = "double_metaphone(name[, alternate])",
    sql_example = r#"```sql
> SELECT double_metaphone('Schmidt') AS primary_code, double_metaphone('Schmidt', true) AS alternate_code;
+--------------+----------------+
| primary_code | alternate_code |
+--------------+----------------+
| XMT          | SMT            |
+--------------+----------------+
```"#,
    argument(name = "name", description = "Name to encode: a text expression."),
    argument(
        name = "alternate",
        description = "Optional boolean: true returns the alternate code instead of the primary one (default false). Equal to the primary code when the name has only one pronunciation."
    )
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DoubleMetaphoneFunc {
    signature: Signature,
}

impl Default for DoubleMetaphoneFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl DoubleMetaphoneFunc {
    pub fn new() -> Self {
        // User-defined rather than `one_of`: see `coerce_optional_args`.
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for DoubleMetaphoneFunc {
    fn name(&self) -> &str {
        "double_metaphone"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_optional_args(
            self.name(),
            "a name and an optional alternate flag: double_metaphone(text [, boolean])",
            arg_types,
            &[ArgKind::Text, ArgKind::Boolean],
            1,
        )
    }

    fn is_strict(&self) -> bool {
        true
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let scalar = all_scalar(&args.args);
        let rows = args.number_rows;
        let (text, alternate) = if args.args.len() == 1 {
            let [text] = take_function_args(name, &args.args)?;
            (
                Strings::try_new(name, 0, text, rows)?,
                Bools::Scalar(Some(false)),
            )
        } else {
            let [text, alternate] = take_function_args(name, &args.args)?;
            (
                Strings::try_new(name, 0, text, rows)?,
                Bools::try_new(name, 1, alternate, rows)?,
            )
        };
        // The standard maximum code length of 4.
        let encoder = DoubleMetaphone::default();
        let (mut folded, mut letters) = (String::new(), String::new());
        build_utf8(scalar, rows, |row, out| {
            let (Some(text), Some(alternate)) = (text.get(row), alternate.get(row)) else {
                return Ok(false);
            };
            if !encodable_letters(text, &mut folded, &mut letters) {
                return Ok(false);
            }
            let codes = encoder.double_metaphone(&letters);
            out.push_str(&if alternate {
                codes.alternate()
            } else {
                codes.primary()
            });
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

    use datafusion::arrow::array::{BooleanArray, StringArray};
    use datafusion::common::ScalarValue;

    use super::*;
    use crate::args::test_util::{call_text, invoke, rows, text};

    fn primary(input: &str) -> Option<String> {
        call_text(&DoubleMetaphoneFunc::new(), &[Some(input)])
    }

    fn alternate(input: &str) -> Option<String> {
        let args = vec![
            text(Some(input)),
            ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))),
        ];
        match invoke(&DoubleMetaphoneFunc::new(), args, 1) {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(v))) => v,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn known_codes() {
        for (name, p, a) in [
            ("Schmidt", "XMT", "SMT"),
            ("Smith", "SM0", "XMT"),
            ("Thompson", "TMPS", "TMPS"),
            ("Jose", "HS", "HS"),
            ("Müller", "MLR", "MLR"),
            ("Xavier", "SF", "SFR"),
        ] {
            assert_eq!(primary(name).as_deref(), Some(p), "primary of {name}");
            assert_eq!(alternate(name).as_deref(), Some(a), "alternate of {name}");
        }
    }

    #[test]
    fn no_letters_or_null_flag_is_null() {
        for none in ["", "  ", "@@@", "911", "Иван", "😀"] {
            assert_eq!(primary(none), None, "{none:?}");
            assert_eq!(alternate(none), None, "{none:?}");
        }
        let args = vec![
            text(Some("Smith")),
            ColumnarValue::Scalar(ScalarValue::Boolean(None)),
        ];
        let out = invoke(&DoubleMetaphoneFunc::new(), args, 1);
        assert!(matches!(
            out,
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
        ));
    }

    #[test]
    fn odd_ascii_does_not_panic() {
        // Every one- to three-letter word over an alphabet with the letters the encoder
        // treats specially, to exercise its look-ahead and look-behind at the edges.
        let alphabet: Vec<char> = "ACGHJLMSTWXZEY".chars().collect();
        let mut word = String::new();
        for &a in &alphabet {
            for &b in &alphabet {
                for &c in &alphabet {
                    for len in 1..=3 {
                        word.clear();
                        word.extend([a, b, c].iter().take(len));
                        // Some words have no code ("H"): only the absence of a panic counts.
                        let _ = primary(&word);
                        let _ = alternate(&word);
                    }
                }
            }
        }
        assert!(primary(&"Gallagher".repeat(10_000)).is_some());
    }

    #[test]
    fn per_row_flags() -> Result<()> {
        let names = ColumnarValue::Array(Arc::new(StringArray::from(vec![
            Some("Schmidt"),
            Some("Schmidt"),
            None,
            Some("Schmidt"),
        ])));
        let flags = ColumnarValue::Array(Arc::new(BooleanArray::from(vec![
            Some(false),
            Some(true),
            Some(true),
            None,
        ])));
        let out = invoke(&DoubleMetaphoneFunc::new(), vec![names, flags], 4)?;
        assert_eq!(
            rows(out, 4),
            vec![Some("XMT".into()), Some("SMT".into()), None, None]
        );
        Ok(())
    }
}
