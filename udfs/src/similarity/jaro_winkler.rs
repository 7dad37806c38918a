//! `jaro_winkler(a, b)`: Jaro-Winkler similarity of two strings.

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
    description = r#"Returns the Jaro-Winkler similarity of two strings, from 0.0 (nothing in common) to 1.0 (equal), favouring strings that share a prefix (when the Jaro similarity is above 0.7, a boost of 0.1 per shared leading character, up to 4). Suited to short strings such as names.

The comparison is by Unicode character and case-sensitive: compare normalised values (`normalize_name`) for names. Two empty strings are equal (1.0); an empty and a non-empty string score 0.0. NULL in either argument gives NULL."#,
    syntax_example = "jaro_winkler(str1, str2)",
    sql_example = r#"```sql
> SELECT jaro_winkler('martha', 'marhta') AS similarity;
+--------------------+
| similarity         |
+--------------------+
| 0.9611111111111111 |
+--------------------+
```"#,
    argument(name = "str1", description = "First string: a text expression."),
    argument(name = "str2", description = "Second string: a text expression.")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JaroWinklerFunc {
    signature: Signature,
}

impl Default for JaroWinklerFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl JaroWinklerFunc {
    pub fn new() -> Self {
        let text = || Coercion::new_exact(TypeSignatureClass::Native(logical_string()));
        Self {
            signature: Signature::coercible(vec![text(), text()], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JaroWinklerFunc {
    fn name(&self) -> &str {
        "jaro_winkler"
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
        build_primitive::<Float64Type>(scalar, rows, |row| {
            Ok(match (a.get(row), b.get(row)) {
                (Some(a), Some(b)) => Some(strsim::jaro_winkler(a, b)),
                _ => None,
            })
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{LargeStringArray, StringArray};

    use super::*;
    use crate::args::test_util::{call_f64, invoke, rows, text};

    fn jw(a: &str, b: &str) -> f64 {
        call_f64(&JaroWinklerFunc::new(), &[Some(a), Some(b)]).unwrap_or(f64::NAN)
    }

    #[test]
    fn known_values() {
        assert!((jw("martha", "marhta") - 0.961_111_111).abs() < 1e-6);
        assert!((jw("dixon", "dicksonx") - 0.813_333_333).abs() < 1e-6);
        assert_eq!(jw("same", "same"), 1.0);
        assert_eq!(jw("abc", "xyz"), 0.0);
        assert_eq!(jw("", ""), 1.0);
        assert_eq!(jw("", "a"), 0.0);
        assert!(jw("Smith", "smith") < 1.0);
        assert_eq!(jw("Zoë", "Zoë"), 1.0);
        assert!(jw("😀abc", "😀abd") > 0.8);
    }

    #[test]
    fn bounded_and_symmetric_on_odd_input() {
        let long_a = "ab".repeat(5_000);
        let long_b = "ba".repeat(5_000);
        for (a, b) in [
            ("@@@", "@@"),
            (long_a.as_str(), long_b.as_str()),
            ("ÿ", "y"),
            ("\0", ""),
        ] {
            let s = jw(a, b);
            assert!((0.0..=1.0).contains(&s), "{a:?} {b:?} gave {s}");
        }
    }

    #[test]
    fn nulls_and_scalar_broadcast() -> Result<()> {
        assert_eq!(call_f64(&JaroWinklerFunc::new(), &[None, Some("a")]), None);
        assert_eq!(call_f64(&JaroWinklerFunc::new(), &[Some("a"), None]), None);
        let column = ColumnarValue::Array(Arc::new(StringArray::from(vec![
            Some("martha"),
            None,
            Some("x"),
        ])));
        let out = invoke(
            &JaroWinklerFunc::new(),
            vec![column, text(Some("marhta"))],
            3,
        )?;
        assert_eq!(
            rows(out, 3),
            vec![Some("0.961111".into()), None, Some("0.000000".into())]
        );

        let left = ColumnarValue::Array(Arc::new(LargeStringArray::from(vec!["a", "b"])));
        let out = invoke(&JaroWinklerFunc::new(), vec![text(None), left], 2)?;
        assert_eq!(rows(out, 2), vec![None, None]);
        Ok(())
    }
}
