//! `name_root(text)`: the canonical form of a person's given name (`Bill` → `william`).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::types::logical_string;
use datafusion::common::utils::take_function_args;
use datafusion::common::Result;
use datafusion::logical_expr::{
    Coercion, ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignatureClass, Volatility,
};
use datafusion_macros::user_doc;

use super::name::normalize_name_into;
use super::nicknames::canonical_given_name;
use crate::args::{all_scalar, build_utf8, Strings};

/// Titles skipped before the given name when another word follows them.
const HONORIFICS: &[&str] = &[
    "dame", "dr", "fr", "lady", "lord", "miss", "mr", "mrs", "ms", "mx", "prof", "rev", "sir",
];

#[user_doc(
    doc_section(label = "Normalisation Functions"),
    description = r#"Returns the canonical form of the given name in a person's name, so that nicknames and spelling variants of one name compare equal: `Bill`, `Billy`, `Will` and `Liam` are all `william`; `Peggy` and `Maggie` are `margaret`. Returns NULL when the name normalises to nothing.

The input is first normalised as by `normalize_name` (so `Smith, Bob` is `bob smith`); a leading title (`Mr`, `Mrs`, `Ms`, `Dr`, `Prof`, `Sir`, ...) is skipped; the first remaining word is the given name. It is looked up in a table of over 500 English nicknames and variants, with some common Spanish, Italian, German and Russian ones. A name not in the table is returned as it is, normalised. A nickname shared by several names maps to one chosen canonical name (`Alex` is `alexander`, `Pat` is `patrick`), so compare roots together with other evidence, not alone."#,
    syntax_example = "name_root(name)",
    sql_example = r#"```sql
> SELECT name_root('Billy Bob Thornton') AS root;
+---------+
| root    |
+---------+
| william |
+---------+
> SELECT name_root('Smith, Peggy') AS root;
+----------+
| root     |
+----------+
| margaret |
+----------+
```"#,
    argument(
        name = "name",
        description = "A full name or a given name: a text expression."
    )
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NameRootFunc {
    signature: Signature,
}

impl Default for NameRootFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl NameRootFunc {
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

impl ScalarUDFImpl for NameRootFunc {
    fn name(&self) -> &str {
        "name_root"
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
        let mut normalized = String::new();
        build_utf8(scalar, args.number_rows, |row, out| {
            Ok(name
                .get(row)
                .is_some_and(|n| name_root_into(n, out, &mut normalized)))
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

/// Write the root of the given name in `input` into `out` (empty on entry); false when
/// there is none. `scratch` is a reusable buffer.
pub(crate) fn name_root_into(input: &str, out: &mut String, scratch: &mut String) -> bool {
    scratch.clear();
    if !normalize_name_into(input, scratch) {
        return false;
    }
    let mut words = scratch.split(' ');
    let mut given = words.next().unwrap_or_default();
    while HONORIFICS.contains(&given) {
        match words.next() {
            Some(next) => given = next,
            None => break,
        }
    }
    out.push_str(canonical_given_name(given).unwrap_or(given));
    !out.is_empty()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::StringArray;

    use super::*;
    use crate::args::test_util::{call_text, invoke, rows};

    fn root(input: &str) -> Option<String> {
        call_text(&NameRootFunc::new(), &[Some(input)])
    }

    #[test]
    fn examples_from_the_documentation() {
        assert_eq!(root("Billy Bob Thornton").as_deref(), Some("william"));
        assert_eq!(root("Smith, Peggy").as_deref(), Some("margaret"));
    }

    #[test]
    fn nicknames_map_to_one_root() {
        for (nick, canonical) in [
            ("Bill", "william"),
            ("will", "william"),
            ("LIAM", "william"),
            ("Bob", "robert"),
            ("Robbie Williams", "robert"),
            ("Maggie", "margaret"),
            ("Meg Ryan", "margaret"),
            ("Kathy", "katherine"),
            ("Catherine", "katherine"),
            ("Jimmy", "james"),
            ("Mick Jagger", "michael"),
            ("Betty", "elizabeth"),
            ("Eliza", "elizabeth"),
            ("Liz", "elizabeth"),
            ("Toño", "antonio"),
            ("Sasha", "alexander"),
        ] {
            assert_eq!(root(nick).as_deref(), Some(canonical), "{nick}");
        }
    }

    #[test]
    fn other_names_map_to_themselves() {
        assert_eq!(root("William Shakespeare").as_deref(), Some("william"));
        assert_eq!(root("Zoë").as_deref(), Some("zoe"));
        assert_eq!(root("Иван").as_deref(), Some("иван"));
        assert_eq!(root("Xyzzy Plugh").as_deref(), Some("xyzzy"));
    }

    #[test]
    fn titles_are_skipped_unless_alone() {
        assert_eq!(root("Dr. Bob Smith").as_deref(), Some("robert"));
        assert_eq!(root("Mrs Peggy Sue").as_deref(), Some("margaret"));
        assert_eq!(root("Smith, Mr. Jim").as_deref(), Some("james"));
        assert_eq!(root("Mr.").as_deref(), Some("mr"));
        assert_eq!(root("Mr Mrs").as_deref(), Some("mrs"));
    }

    #[test]
    fn nothing_left_is_null() {
        for empty in ["", "  ", "@@@", "😀", ","] {
            assert_eq!(root(empty), None, "{empty:?}");
        }
        assert_eq!(call_text(&NameRootFunc::new(), &[None]), None);
        let long = format!("Bobby {}", "x".repeat(200_000));
        assert_eq!(root(&long).as_deref(), Some("robert"));
    }

    #[test]
    fn arrays() -> Result<()> {
        let names = ColumnarValue::Array(Arc::new(StringArray::from(vec![
            Some("Jim"),
            None,
            Some("Katie Holmes"),
            Some("!!"),
        ])));
        let out = invoke(&NameRootFunc::new(), vec![names], 4)?;
        assert_eq!(
            rows(out, 4),
            vec![Some("james".into()), None, Some("katherine".into()), None]
        );
        Ok(())
    }
}
