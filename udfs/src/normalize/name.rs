//! `normalize_name(text)`: a person's name as lowercase ASCII-folded tokens.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::types::logical_string;
use datafusion::common::utils::take_function_args;
use datafusion::common::Result;
use datafusion::logical_expr::{
    Coercion, ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignatureClass, Volatility,
};
use datafusion_macros::user_doc;

use crate::args::{all_scalar, build_utf8, Strings};
use crate::fold::push_name_tokens;

#[user_doc(
    doc_section(label = "Normalisation Functions"),
    description = r#"Normalises a person's name for comparison: lowercase words separated by single spaces, or NULL when no letter or digit is left.

Latin letters are folded to ASCII (`é`→`e`, `ß`→`ss`, `ø`→`o`, `ł`→`l`, `æ`→`ae`, `þ`→`th`); letters of other scripts are kept, lowercased. Apostrophes are removed (`O'Brien`→`obrien`); hyphens, periods and all other punctuation, symbols and emoji separate words (`Jean-Luc`→`jean luc`). A name with exactly one comma is read as `last, first` and turned around (`SMITH, John`→`john smith`); with more commas they are plain separators."#,
    syntax_example = "normalize_name(name)",
    sql_example = r#"```sql
> SELECT normalize_name('  MÜLLER-Lüdenscheidt, José ') AS name;
+--------------------------+
| name                     |
+--------------------------+
| jose muller ludenscheidt |
+--------------------------+
> SELECT normalize_name('Siobhán O''Brien') AS name;
+----------------+
| name           |
+----------------+
| siobhan obrien |
+----------------+
```"#,
    argument(name = "name", description = "Name to normalise: a text expression.")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizeNameFunc {
    signature: Signature,
}

impl Default for NormalizeNameFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl NormalizeNameFunc {
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

impl ScalarUDFImpl for NormalizeNameFunc {
    fn name(&self) -> &str {
        "normalize_name"
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
        build_utf8(scalar, args.number_rows, |row, out| {
            Ok(name.get(row).is_some_and(|n| normalize_name_into(n, out)))
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

/// Write the normal form of `input` into `out` (empty on entry); false when it is empty.
pub(crate) fn normalize_name_into(input: &str, out: &mut String) -> bool {
    let mut commas = input.match_indices(',');
    match (commas.next(), commas.next()) {
        (Some((comma, _)), None) => {
            push_name_tokens(&input[comma + 1..], out);
            push_name_tokens(&input[..comma], out);
        }
        _ => push_name_tokens(input, out),
    }
    !out.is_empty()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{LargeStringArray, StringViewArray};

    use super::*;
    use crate::args::test_util::{call_text, invoke, rows};

    fn norm(input: &str) -> Option<String> {
        call_text(&NormalizeNameFunc::new(), &[Some(input)])
    }

    #[test]
    fn examples_from_the_documentation() {
        assert_eq!(
            norm("  MÜLLER-Lüdenscheidt, José ").as_deref(),
            Some("jose muller ludenscheidt")
        );
        assert_eq!(norm("Siobhán O'Brien").as_deref(), Some("siobhan obrien"));
    }

    #[test]
    fn words_are_folded_and_collapsed() {
        assert_eq!(
            norm("Jean-Luc   PICARD").as_deref(),
            Some("jean luc picard")
        );
        assert_eq!(
            norm("Dr. Martin Luther King, Jr.").as_deref(),
            Some("jr dr martin luther king")
        );
        assert_eq!(
            norm("Straße Ærøskøbing").as_deref(),
            Some("strasse aeroskobing")
        );
        assert_eq!(norm("Иван Петров").as_deref(), Some("иван петров"));
        assert_eq!(norm("Anna 😀 Lee").as_deref(), Some("anna lee"));
    }

    #[test]
    fn one_comma_swaps_last_and_first() {
        assert_eq!(norm("SMITH, John").as_deref(), Some("john smith"));
        assert_eq!(norm("Smith,John Paul").as_deref(), Some("john paul smith"));
        assert_eq!(norm("Smith,").as_deref(), Some("smith"));
        assert_eq!(norm(", John").as_deref(), Some("john"));
        assert_eq!(norm("Smith, John, Esq").as_deref(), Some("smith john esq"));
    }

    #[test]
    fn nothing_left_is_null() {
        for empty in ["", "   ", "@@@", ",", "'", "😀🎉", "-- . --"] {
            assert_eq!(norm(empty), None, "{empty:?}");
        }
        assert_eq!(call_text(&NormalizeNameFunc::new(), &[None]), None);
    }

    #[test]
    fn long_input_and_every_string_type() -> Result<()> {
        let long = "Ann-Marie ".repeat(50_000);
        let out = norm(&long).unwrap_or_default();
        assert_eq!(out.len(), "ann marie ".len() * 50_000 - 1);

        let values = vec![Some("Ó Súilleabháin, Máire"), None, Some("")];
        let expected = vec![Some("maire o suilleabhain".to_owned()), None, None];
        for array in [
            ColumnarValue::Array(Arc::new(LargeStringArray::from(values.clone()))),
            ColumnarValue::Array(Arc::new(StringViewArray::from(values.clone()))),
        ] {
            assert_eq!(
                rows(invoke(&NormalizeNameFunc::new(), vec![array], 3)?, 3),
                expected
            );
        }
        Ok(())
    }
}
