//! `token_jaccard(a, b)`: Jaccard similarity of two strings' sets of words.

use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::types::logical_string;
use datafusion::common::utils::take_function_args;
use datafusion::common::Result;
use datafusion::logical_expr::{
    Coercion, ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignatureClass, Volatility,
};
use datafusion_macros::user_doc;

use crate::args::{all_scalar, build_primitive, Strings};

#[user_doc(
    doc_section(label = "Similarity Functions"),
    description = r#"Returns the Jaccard similarity of the sets of words of two strings: the number of distinct words they share divided by the number of distinct words in either, from 0.0 to 1.0. Word order and repeated words do not matter, so it suits names and addresses whose parts come in different orders.

Words are the runs of non-whitespace characters, lowercased; punctuation stays part of a word, so normalise first (`normalize_name`) when it should not count. When neither string has a word the similarity is undefined and the result is NULL (two blank values are no evidence of a match); when only one has none it is 0.0. NULL in either argument gives NULL."#,
    syntax_example = "token_jaccard(str1, str2)",
    sql_example = r#"```sql
> SELECT token_jaccard('Mary Ann Smith', 'smith mary') AS similarity;
+--------------------+
| similarity         |
+--------------------+
| 0.6666666666666666 |
+--------------------+
```"#,
    argument(name = "str1", description = "First string: a text expression."),
    argument(name = "str2", description = "Second string: a text expression.")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TokenJaccardFunc {
    signature: Signature,
}

impl Default for TokenJaccardFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenJaccardFunc {
    pub fn new() -> Self {
        let text = || Coercion::new_exact(TypeSignatureClass::Native(logical_string()));
        Self {
            signature: Signature::coercible(vec![text(), text()], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for TokenJaccardFunc {
    fn name(&self) -> &str {
        "token_jaccard"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
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
        let mut left = TokenSet::default();
        let mut right = TokenSet::default();
        build_primitive::<Float64Type>(scalar, rows, |row| {
            Ok(match (a.get(row), b.get(row)) {
                (Some(a), Some(b)) => {
                    left.fill(a);
                    right.fill(b);
                    jaccard(&left, &right)
                }
                _ => None,
            })
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

/// The distinct lowercase words of a string, sorted; its buffers are reused from row to
/// row, so a row allocates nothing once they have grown.
#[derive(Debug, Default)]
struct TokenSet {
    text: String,
    /// Byte ranges of the words in `text`, sorted by word and deduplicated.
    words: Vec<(usize, usize)>,
}

impl TokenSet {
    fn fill(&mut self, input: &str) {
        self.text.clear();
        if input.is_ascii() {
            self.text.push_str(input);
            self.text.make_ascii_lowercase();
        } else {
            for c in input.chars() {
                self.text.extend(c.to_lowercase());
            }
        }
        let text = &self.text;
        self.words.clear();
        let mut start = None;
        for (i, c) in text.char_indices() {
            match (c.is_whitespace(), start) {
                (true, Some(s)) => {
                    self.words.push((s, i));
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            self.words.push((s, text.len()));
        }
        let word = |&(s, e): &(usize, usize)| text.get(s..e).unwrap_or_default();
        self.words.sort_unstable_by(|x, y| word(x).cmp(word(y)));
        self.words.dedup_by(|x, y| word(x) == word(y));
    }

    fn word(&self, i: usize) -> &str {
        self.words
            .get(i)
            .and_then(|&(s, e)| self.text.get(s..e))
            .unwrap_or_default()
    }
}

fn jaccard(a: &TokenSet, b: &TokenSet) -> Option<f64> {
    let (n, m) = (a.words.len(), b.words.len());
    if n == 0 && m == 0 {
        return None;
    }
    // Merge the two sorted lists to count the shared words.
    let (mut i, mut j, mut shared) = (0, 0, 0usize);
    while i < n && j < m {
        match a.word(i).cmp(b.word(j)) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                shared += 1;
                i += 1;
                j += 1;
            }
        }
    }
    Some(shared as f64 / (n + m - shared) as f64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::StringArray;

    use super::*;
    use crate::args::test_util::{call_f64, invoke, rows, text};

    fn tj(a: &str, b: &str) -> Option<f64> {
        call_f64(&TokenJaccardFunc::new(), &[Some(a), Some(b)])
    }

    #[test]
    fn known_values() {
        assert_eq!(tj("Mary Ann Smith", "smith mary"), Some(2.0 / 3.0));
        assert_eq!(tj("a b c", "c b a"), Some(1.0));
        assert_eq!(tj("a a a b", "b b a"), Some(1.0));
        assert_eq!(tj("a b", "c d"), Some(0.0));
        assert_eq!(tj("ÉMILE Zola", "émile\tzola\n"), Some(1.0));
        assert_eq!(tj("O'Brien", "obrien"), Some(0.0));
        assert_eq!(tj("😀 party", "party 😀 time"), Some(2.0 / 3.0));
    }

    #[test]
    fn empty_sets() {
        assert_eq!(tj("", ""), None);
        assert_eq!(tj("   ", "\t"), None);
        assert_eq!(tj("", "a"), Some(0.0));
        assert_eq!(tj("a", " "), Some(0.0));
        assert_eq!(tj("@@@", "@@@"), Some(1.0));
    }

    #[test]
    fn long_input() {
        let many: String = (0..20_000).map(|i| format!("w{i} ")).collect();
        let half: String = (0..10_000).map(|i| format!("W{i} ")).collect();
        assert_eq!(tj(&many, &half), Some(0.5));
    }

    #[test]
    fn buffers_are_reset_between_rows() -> Result<()> {
        let a = ColumnarValue::Array(Arc::new(StringArray::from(vec![
            Some("one two three"),
            Some("x"),
            None,
            Some(""),
        ])));
        let out = invoke(&TokenJaccardFunc::new(), vec![a, text(Some("two one"))], 4)?;
        assert_eq!(
            rows(out, 4),
            vec![
                Some("0.666667".into()),
                Some("0.000000".into()),
                None,
                Some("0.000000".into())
            ]
        );
        Ok(())
    }
}
