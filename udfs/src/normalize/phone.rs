//! `normalize_phone(text [, default_region])`: E.164 form of a valid phone number.

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::utils::take_function_args;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion_macros::user_doc;
use phonenumber::country::Id;

use super::phone_db::with_database;
use crate::args::{all_scalar, build_utf8, coerce_optional_args, ArgKind, Strings};

/// Inputs longer than this are garbage, not phone numbers (a `tel:` URI with parameters
/// included), and are not handed to the parser's regular expressions at all.
const MAX_INPUT_LEN: usize = 128;

#[user_doc(
    doc_section(label = "Normalisation Functions"),
    description = r#"Normalises a phone number to its E.164 form (`+` country code and national number, digits only), or returns NULL when it is not a valid number.

Numbers are parsed and validated with the metadata of Google's libphonenumber (through the `phonenumber` crate): formatting characters, `tel:` URIs and vanity letters (`1-800-FLOWERS`) are understood, an extension is dropped, and a number that is too short, too long or not in use in its country's numbering plan gives NULL.

A number written internationally (a leading `+`, or the international prefix `00`) needs no region. There is no built-in default region: a number written nationally (`(202) 555-0143`) gives NULL unless `default_region` says which country it is from. The region also lets the country's own international prefix be used (`011 44 ...` with region `US`)."#,
    syntax_example = "normalize_phone(phone[, default_region])",
    sql_example = r#"```sql
> SELECT normalize_phone('+44 20 7946 0958') AS phone;
+---------------+
| phone         |
+---------------+
| +442079460958 |
+---------------+
> SELECT normalize_phone('(202) 555-0143', 'US') AS phone;
+--------------+
| phone        |
+--------------+
| +12025550143 |
+--------------+
```"#,
    argument(
        name = "phone",
        description = "Phone number to normalise: a text expression."
    ),
    argument(
        name = "default_region",
        description = "Optional ISO 3166-1 alpha-2 country code (`US`, `gb`; `UK` is read as `GB`) for numbers written without an international prefix. NULL gives NULL; an empty string means no default region. An unknown code given as a constant is an error; an unknown value in a column (`Germany`, `n/a`) gives NULL for that row."
    )
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizePhoneFunc {
    signature: Signature,
}

impl Default for NormalizePhoneFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl NormalizePhoneFunc {
    pub fn new() -> Self {
        // User-defined rather than `one_of`: see `coerce_optional_args`.
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for NormalizePhoneFunc {
    fn name(&self) -> &str {
        "normalize_phone"
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
            "a phone number and an optional default region: normalize_phone(text [, text])",
            arg_types,
            &[ArgKind::Text, ArgKind::Text],
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
        let mut scratch = String::new();
        if args.args.len() == 1 {
            let [phone] = take_function_args(name, &args.args)?;
            let phone = Strings::try_new(name, 0, phone, rows)?;
            return build_utf8(scalar, rows, |row, out| {
                Ok(phone
                    .get(row)
                    .is_some_and(|p| normalize_phone_into(p, None, out, &mut scratch)))
            });
        }
        // A constant unknown region is a mistake in the query; an unknown value in a
        // column is messy data (`Germany`, `n/a`) and gives NULL for that row.
        let region_is_column = matches!(args.args[1], ColumnarValue::Array(_));
        let [phone, region] = take_function_args(name, &args.args)?;
        let phone = Strings::try_new(name, 0, phone, rows)?;
        let region = Strings::try_new(name, 1, region, rows)?;
        build_utf8(scalar, rows, |row, out| {
            let (Some(p), Some(r)) = (phone.get(row), region.get(row)) else {
                return Ok(false);
            };
            let region = match parse_region(r) {
                Ok(region) => region,
                Err(_) if region_is_column => return Ok(false),
                Err(e) => return Err(e),
            };
            Ok(normalize_phone_into(p, region, out, &mut scratch))
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

/// The region of a `default_region` argument: None for an empty one, an error for an
/// unknown code.
fn parse_region(region: &str) -> Result<Option<Id>> {
    let region = region.trim();
    if region.is_empty() {
        return Ok(None);
    }
    let id = match region.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
            match &code {
                // Not ISO 3166, but what British data says.
                b"UK" => Some(Id::GB),
                _ => std::str::from_utf8(&code)
                    .ok()
                    .and_then(|c| Id::from_str(c).ok()),
            }
        }
        _ => None,
    };
    match id {
        Some(id) => Ok(Some(id)),
        None => exec_err!(
            "normalize_phone: unknown region code '{region}': expected an ISO 3166-1 alpha-2 country code such as 'US' or 'GB'"
        ),
    }
}

/// Write the E.164 form of `input` into `out` (empty on entry) and return true, or return
/// false when `input` is not a valid phone number. `scratch` is a reusable buffer.
pub fn normalize_phone_into(
    input: &str,
    region: Option<Id>,
    out: &mut String,
    scratch: &mut String,
) -> bool {
    let input = input.trim();
    if input.is_empty() || input.len() > MAX_INPUT_LEN || !input.bytes().any(|b| b.is_ascii_digit())
    {
        return false;
    }
    scratch.clear();
    // `00` is the international prefix of most of the world (ITU-T E.164 recommends it),
    // and no national number starts with it, so it is read as `+` whatever the region.
    if let Some(rest) = input.strip_prefix("00") {
        scratch.push('+');
        scratch.push_str(rest);
    } else if let Some(region) = region {
        if !starts_with_plus(input) {
            if let Some(international) = strip_international_prefix(input, region) {
                // Dialled from `region` to another country (`011 33 ...` from the US).
                scratch.push('+');
                scratch.push_str(international);
                if parse_into(scratch, None, out) {
                    return true;
                }
                out.clear();
                scratch.clear();
            }
        }
    }
    let input = if scratch.is_empty() {
        input
    } else {
        scratch.as_str()
    };
    // With a region, the parser strips that region's national prefix even from a number
    // written with `+` (`+33 1 42 68 53 00` read with region US loses its `1`), so a
    // number that says its own country is parsed without one.
    let region = if starts_with_plus(input) {
        None
    } else {
        region
    };
    parse_into(input, region, out)
}

/// Parse, validate and format; false for an invalid number.
fn parse_into(input: &str, region: Option<Id>, out: &mut String) -> bool {
    with_database(|db| {
        // The parser is a port of libphonenumber with slicing and `unwrap`s of its own;
        // a panic on some odd input must not take the query down, so it becomes a NULL.
        catch_unwind(AssertUnwindSafe(|| {
            let Ok(number) = phonenumber::parse_with(db, region, input) else {
                return false;
            };
            // E.164 is `+`, the country code and the national number (with its leading
            // zeros), as the crate's formatter writes it; that formatter also picks a
            // national format first, trying each format's patterns, for nothing.
            phonenumber::is_valid_with(db, &number)
                && write!(out, "+{}{}", number.country().code(), number.national()).is_ok()
        }))
        .unwrap_or(false)
    })
}

/// Whether the number is written with a leading `+` (possibly after `tel:` or a bracket).
fn starts_with_plus(input: &str) -> bool {
    input.bytes().find(|b| b.is_ascii_digit() || *b == b'+') == Some(b'+')
}

/// `input` after the international call prefix of `region` (`011` for the US), when its
/// digits start with one.
fn strip_international_prefix(input: &str, region: Id) -> Option<&str> {
    // The prefix is matched on the digits alone, then skipped in the formatted input.
    let mut digits = [0u8; 8];
    let mut n = 0;
    for b in input.bytes().filter(u8::is_ascii_digit) {
        match digits.get_mut(n) {
            Some(slot) => *slot = b,
            None => break,
        }
        n += 1;
    }
    let digits = std::str::from_utf8(digits.get(..n)?).ok()?;
    let end = with_database(|db| {
        let idd = db.by_id(region.as_ref())?.international_prefix()?;
        let prefix = idd.find(digits).filter(|m| m.start() == 0 && m.end() > 0)?;
        Some(prefix.end())
    })?;
    let (cut, _) = input
        .char_indices()
        .filter(|(_, c)| c.is_ascii_digit())
        .nth(end - 1)?;
    input.get(cut + 1..)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::StringArray;

    use super::*;
    use crate::args::test_util::{call_text, invoke, rows};

    fn norm(input: &str, region: Option<&str>) -> Option<String> {
        let f = NormalizePhoneFunc::new();
        match region {
            None => call_text(&f, &[Some(input)]),
            Some(r) => call_text(&f, &[Some(input), Some(r)]),
        }
    }

    #[test]
    fn examples_from_the_documentation() {
        assert_eq!(
            norm("+44 20 7946 0958", None).as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            norm("(202) 555-0143", Some("US")).as_deref(),
            Some("+12025550143")
        );
    }

    #[test]
    fn international_numbers_need_no_region() {
        assert_eq!(
            norm("0044 20 7946 0958", None).as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            norm("+1 (202) 555-0143 ext. 12", None).as_deref(),
            Some("+12025550143")
        );
        assert_eq!(
            norm("tel:+49-30-901820", None).as_deref(),
            Some("+4930901820")
        );
        assert_eq!(
            norm("+33 1 42 68 53 00", Some("US")).as_deref(),
            Some("+33142685300")
        );
    }

    #[test]
    fn national_numbers_need_a_region() {
        assert_eq!(norm("(202) 555-0143", None), None);
        assert_eq!(
            norm("020 7946 0958", Some("gb")).as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            norm("020 7946 0958", Some("UK")).as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            norm("030 901820", Some("DE")).as_deref(),
            Some("+4930901820")
        );
        assert_eq!(
            norm("011 44 20 7946 0958", Some("US")).as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            norm("1-800-FLOWERS", Some("US")).as_deref(),
            Some("+18003569377")
        );
        assert_eq!(
            norm("011 33 1 42 68 53 00", Some("US")).as_deref(),
            Some("+33142685300")
        );
        assert_eq!(
            norm("0033 1 42 68 53 00", Some("US")).as_deref(),
            Some("+33142685300")
        );
        assert_eq!(
            norm("tel:+33-1-42-68-53-00", Some("US")).as_deref(),
            Some("+33142685300")
        );
        assert_eq!(norm("(202) 555-0143", Some("")), None);
    }

    /// E.164 is written directly; the crate's formatter writes the same.
    #[test]
    fn e164_is_what_the_crates_formatter_writes() {
        for (input, region) in [
            ("+39 06 6982 1234", None),
            ("+44 20 7946 0958", None),
            ("+1 268 464 1234", None),
            ("+800 1234 5678", None),
            ("+225 07 0123 4567", None),
            ("0151 23456789", Some("DE")),
            ("020 7946 0958", Some("GB")),
        ] {
            let number =
                phonenumber::parse(region.map(|r| r.parse().expect("region")), input).expect(input);
            let formatted = number.format().mode(phonenumber::Mode::E164).to_string();
            assert_eq!(
                norm(input, region).as_deref(),
                Some(formatted.as_str()),
                "{input}"
            );
        }
    }

    #[test]
    fn invalid_numbers_and_garbage_are_null() {
        for bad in [
            "",
            "   ",
            "@@@",
            "abc",
            "+",
            "+1",
            "+1 555",
            "+44 12",
            "12345678901234567890",
            "😀📞",
            "+999 123 456 789",
        ] {
            assert_eq!(norm(bad, None), None, "{bad:?}");
            assert_eq!(norm(bad, Some("US")), None, "{bad:?} with US");
        }
        assert_eq!(norm(&"1".repeat(100_000), None), None);
        assert_eq!(
            norm(&format!("+1 202 555 0143{}", " ".repeat(200)), None).as_deref(),
            Some("+12025550143")
        );
    }

    #[test]
    fn unknown_region_is_an_error_and_null_region_is_null() {
        let f = NormalizePhoneFunc::new();
        for bad in ["XX", "USA", "1", "ü", "U😀"] {
            let args = vec![
                crate::args::test_util::text(Some("2025550143")),
                crate::args::test_util::text(Some(bad)),
            ];
            let err = invoke(&f, args, 1).expect_err(bad).to_string();
            assert!(err.contains("unknown region code"), "{err}");
        }
        assert_eq!(call_text(&f, &[Some("2025550143"), None]), None);
        assert_eq!(call_text(&f, &[None, Some("US")]), None);
    }

    #[test]
    fn a_region_per_row() -> Result<()> {
        let phones = ColumnarValue::Array(Arc::new(StringArray::from(vec![
            Some("020 7946 0958"),
            Some("(202) 555-0143"),
            Some("020 7946 0958"),
            None,
        ])));
        let regions = ColumnarValue::Array(Arc::new(StringArray::from(vec![
            Some("GB"),
            Some("US"),
            None,
            Some("US"),
        ])));
        let out = invoke(&NormalizePhoneFunc::new(), vec![phones, regions], 4)?;
        assert_eq!(
            rows(out, 4),
            vec![
                Some("+442079460958".into()),
                Some("+12025550143".into()),
                None,
                None
            ]
        );
        Ok(())
    }
}
