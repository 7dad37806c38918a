//! `damerau_levenshtein(a, b)`: edit distance counting adjacent transpositions.

use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::types::logical_string;
use datafusion::common::utils::take_function_args;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    Coercion, ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignatureClass, Volatility,
};
use datafusion_macros::user_doc;

use crate::args::{all_scalar, build_primitive, Strings};

/// Longest argument accepted, in characters. The unrestricted algorithm keeps a full
/// (n+2)×(m+2) matrix: at this size 8 MiB, at 100 000 characters 80 GB.
const MAX_CHARS: usize = 1024;

#[user_doc(
    doc_section(label = "Similarity Functions"),
    description = r#"Returns the Damerau-Levenshtein distance between two strings: the least number of single-character insertions, deletions, substitutions and transpositions of two adjacent characters that turn one into the other.

This is the unrestricted (true) Damerau-Levenshtein distance, a metric: a substring may be edited more than once, so `damerau_levenshtein('ca', 'abc')` is 2, where the restricted "optimal string alignment" variant gives 3. Characters are Unicode characters, compared case-sensitively. Arguments longer than 1024 characters are an error. NULL in either argument gives NULL."#,
    syntax_example = "damerau_levenshtein(str1, str2)",
    sql_example = r#"```sql
> SELECT damerau_levenshtein('Jonh Smtih', 'John Smith') AS distance;
+----------+
| distance |
+----------+
| 2        |
+----------+
```"#,
    argument(name = "str1", description = "First string: a text expression."),
    argument(name = "str2", description = "Second string: a text expression.")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DamerauLevenshteinFunc {
    signature: Signature,
}

impl Default for DamerauLevenshteinFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl DamerauLevenshteinFunc {
    pub fn new() -> Self {
        let text = || Coercion::new_exact(TypeSignatureClass::Native(logical_string()));
        Self {
            signature: Signature::coercible(vec![text(), text()], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for DamerauLevenshteinFunc {
    fn name(&self) -> &str {
        "damerau_levenshtein"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_strict(&self) -> bool {
        true
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = all_scalar(&args.args);
        let rows = args.number_rows;
        let [a, b] = take_function_args(self.name(), &args.args)?;
        let a = Strings::try_new(self.name(), 0, a, rows)?;
        let b = Strings::try_new(self.name(), 1, b, rows)?;
        build_primitive::<Int64Type>(scalar, rows, |row| match (a.get(row), b.get(row)) {
            (Some(a), Some(b)) => distance(a, b).map(Some),
            _ => Ok(None),
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

fn distance(a: &str, b: &str) -> Result<i64> {
    if a == b {
        return Ok(0);
    }
    for s in [a, b] {
        // A byte count within the limit is a character count within it too.
        if s.len() > MAX_CHARS && s.chars().count() > MAX_CHARS {
            return exec_err!(
                "damerau_levenshtein: an argument is {} characters long, the limit is {MAX_CHARS}",
                s.chars().count()
            );
        }
    }
    // At most 2048 after the check above, so the conversion cannot fail.
    Ok(i64::try_from(strsim::damerau_levenshtein(a, b)).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::StringViewArray;

    use super::*;
    use crate::args::test_util::{call_i64, invoke, rows, text};

    fn dl(a: &str, b: &str) -> Option<i64> {
        call_i64(&DamerauLevenshteinFunc::new(), &[Some(a), Some(b)])
    }

    #[test]
    fn known_distances() {
        assert_eq!(dl("Jonh Smtih", "John Smith"), Some(2));
        assert_eq!(dl("ca", "abc"), Some(2));
        assert_eq!(dl("kitten", "sitting"), Some(3));
        assert_eq!(dl("", ""), Some(0));
        assert_eq!(dl("", "abc"), Some(3));
        assert_eq!(dl("abc", ""), Some(3));
        assert_eq!(dl("Smith", "smith"), Some(1));
        assert_eq!(dl("Zoë", "Zoe"), Some(1));
        assert_eq!(dl("😀😃", "😃😀"), Some(1));
        assert_eq!(dl("@@@", "@@"), Some(1));
    }

    #[test]
    fn length_limit_counts_characters() {
        let at_limit = "é".repeat(MAX_CHARS);
        assert_eq!(dl(&at_limit, &at_limit), Some(0));
        assert_eq!(dl(&at_limit, "e"), Some(MAX_CHARS as i64));
        let over = "a".repeat(MAX_CHARS + 1);
        let err = invoke(
            &DamerauLevenshteinFunc::new(),
            vec![text(Some(&over)), text(Some("a"))],
            1,
        )
        .expect_err("over the limit");
        assert!(err.to_string().contains("limit is 1024"), "{err}");
        // Equal strings need no matrix, whatever their length.
        assert_eq!(dl(&over, &over), Some(0));
    }

    #[test]
    fn nulls_and_arrays() -> Result<()> {
        assert_eq!(
            call_i64(&DamerauLevenshteinFunc::new(), &[None, Some("a")]),
            None
        );
        let a = ColumnarValue::Array(Arc::new(StringViewArray::from(vec![
            Some("ab"),
            None,
            Some("abc"),
        ])));
        let b = ColumnarValue::Array(Arc::new(StringViewArray::from(vec![
            Some("ba"),
            Some("x"),
            None,
        ])));
        let out = invoke(&DamerauLevenshteinFunc::new(), vec![a, b], 3)?;
        assert_eq!(rows(out, 3), vec![Some("1".into()), None, None]);
        Ok(())
    }
}
