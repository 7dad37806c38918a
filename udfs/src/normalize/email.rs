//! `normalize_email(text)`: one canonical spelling per mailbox, NULL for what is not one.

use std::borrow::Cow;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::types::logical_string;
use datafusion::common::utils::take_function_args;
use datafusion::common::Result;
use datafusion::logical_expr::{
    Coercion, ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignatureClass, Volatility,
};
use datafusion_macros::user_doc;
use idna::AsciiDenyList;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use crate::args::{all_scalar, build_utf8, Strings};

/// Longest address accepted (RFC 5321: 254 octets in a path, less the angle brackets).
const MAX_ADDRESS_LEN: usize = 254;
/// Longest local part (RFC 5321 section 4.5.3.1.1).
const MAX_LOCAL_LEN: usize = 64;
/// Longest domain (RFC 1035, in its ASCII form).
const MAX_DOMAIN_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;
/// Inputs longer than this are rejected before any Unicode processing: no valid domain,
/// however much it shrinks through IDNA mapping, is written with more.
const MAX_INPUT_LEN: usize = 1024;

#[user_doc(
    doc_section(label = "Normalisation Functions"),
    description = r#"Normalises an email address so that the spellings of one mailbox compare equal, or returns NULL when the input is not a valid address.

The address is trimmed and lowercased; a `+tag` sub-address is removed from the local part (`ann+news@x.com` is `ann@x.com`); for `gmail.com` and `googlemail.com` the dots of the local part are removed and the domain becomes `gmail.com`; an internationalised domain is converted to its ASCII (punycode) form.

NULL is returned for anything that is not a plain `local@domain` address: no `@` or more than one, an empty local part or domain, whitespace inside, characters not allowed in a local part (quoted local parts such as `"a b"@x.com` are not accepted), leading, trailing or doubled dots, a domain without a dot, an IP-literal domain, a label over 63 characters, a local part over 64 or an address over 254 characters. Non-ASCII local parts (RFC 6531) are accepted when made of letters, digits and combining marks."#,
    syntax_example = "normalize_email(email)",
    sql_example = r#"```sql
> SELECT normalize_email('  John.Smith+news@GoogleMail.com ') AS email;
+---------------------+
| email               |
+---------------------+
| johnsmith@gmail.com |
+---------------------+
> SELECT normalize_email('info@bücher.de') AS email;
+-----------------------+
| email                 |
+-----------------------+
| info@xn--bcher-kva.de |
+-----------------------+
```"#,
    argument(
        name = "email",
        description = "Email address to normalise: a text expression (`Utf8`, `LargeUtf8` or `Utf8View`)."
    )
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizeEmailFunc {
    signature: Signature,
}

impl Default for NormalizeEmailFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl NormalizeEmailFunc {
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

impl ScalarUDFImpl for NormalizeEmailFunc {
    fn name(&self) -> &str {
        "normalize_email"
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
        let [email] = take_function_args(self.name(), &args.args)?;
        let email = Strings::try_new(self.name(), 0, email, args.number_rows)?;
        let mut scratch = String::new();
        build_utf8(scalar, args.number_rows, |row, out| {
            Ok(email
                .get(row)
                .is_some_and(|e| normalize_email_into(e, out, &mut scratch)))
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

/// Write the normal form of `input` into `out` (empty on entry) and return true, or return
/// false when `input` is not a valid address. `scratch` is a reusable buffer.
pub fn normalize_email_into(input: &str, out: &mut String, scratch: &mut String) -> bool {
    let address = input.trim();
    if address.is_empty() || address.len() > MAX_INPUT_LEN {
        return false;
    }
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    if local.is_empty() || domain.is_empty() || !is_valid_local(local) {
        return false;
    }
    let Some(domain) = ascii_domain(domain, scratch) else {
        return false;
    };
    let gmail = domain == "gmail.com" || domain == "googlemail.com";

    // Sub-addressing (`user+tag`) is a convention of Gmail, Outlook, iCloud, Fastmail and
    // most other providers: the tag never names a different mailbox.
    let local = match local.find('+') {
        Some(0) => return false,
        Some(plus) => &local[..plus],
        None => local,
    };
    if local.is_ascii() {
        out.extend(
            local
                .chars()
                .filter(|&c| !(gmail && c == '.'))
                .map(|c| c.to_ascii_lowercase()),
        );
    } else {
        for c in local.nfc() {
            if !(gmail && c == '.') {
                out.extend(c.to_lowercase());
            }
        }
    }
    // `ann.+tag@x.com` passes as a dot-atom but leaves `ann.`, which is not one.
    if out.is_empty() || out.ends_with('.') {
        return false;
    }
    out.push('@');
    out.push_str(if gmail { "gmail.com" } else { &domain });
    out.len() <= MAX_ADDRESS_LEN
}

/// A dot-atom local part (RFC 5322 `atext`, plus RFC 6531 letters, digits and marks).
fn is_valid_local(local: &str) -> bool {
    if local.len() > MAX_LOCAL_LEN
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return false;
    }
    local.chars().all(|c| {
        if c.is_ascii() {
            c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
        } else {
            c.is_alphanumeric() || is_combining_mark(c)
        }
    })
}

/// The domain in lowercase ASCII (IDNA/UTS 46 processing, punycode for non-ASCII labels),
/// or None when it is not a valid host name with at least two labels.
fn ascii_domain<'a>(domain: &'a str, scratch: &'a mut String) -> Option<Cow<'a, str>> {
    // UTS 46 lets symbols and emoji through (browsers resolve `i❤.ws`); IDNA 2008, which
    // mail systems follow, allows only letters, digits and marks. The ideographic and
    // full-width full stops are dots, mapped to `.` by UTS 46.
    let allowed = |c: char| {
        c.is_ascii()
            || c.is_alphanumeric()
            || is_combining_mark(c)
            || matches!(c, '\u{3002}' | '\u{FF0E}' | '\u{FF61}')
    };
    if !domain.chars().all(allowed) {
        return None;
    }
    let domain: &str = if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        scratch.clear();
        scratch.push_str(domain);
        scratch.make_ascii_lowercase();
        scratch
    } else {
        domain
    };
    // Lowercase LDH input comes back borrowed, without an allocation.
    let ascii = idna::domain_to_ascii_cow(domain.as_bytes(), AsciiDenyList::STD3).ok()?;
    is_valid_host(&ascii).then_some(ascii)
}

fn is_valid_host(host: &str) -> bool {
    if host.len() > MAX_DOMAIN_LEN {
        return false;
    }
    let mut labels = 0;
    let mut last = "";
    for label in host.split('.') {
        if label.is_empty()
            || label.len() > MAX_LABEL_LEN
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return false;
        }
        labels += 1;
        last = label;
    }
    // An all-numeric top-level label is an IP address, not a domain.
    labels >= 2 && !last.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{LargeStringArray, StringArray, StringViewArray};
    use datafusion::common::ScalarValue;

    use super::*;
    use crate::args::test_util::{call_text, invoke, rows};

    fn norm(input: &str) -> Option<String> {
        call_text(&NormalizeEmailFunc::new(), &[Some(input)])
    }

    #[test]
    fn examples_from_the_documentation() {
        assert_eq!(
            norm("  John.Smith+news@GoogleMail.com ").as_deref(),
            Some("johnsmith@gmail.com")
        );
        assert_eq!(
            norm("info@bücher.de").as_deref(),
            Some("info@xn--bcher-kva.de")
        );
    }

    #[test]
    fn lowercases_and_strips_tags_for_every_provider() {
        assert_eq!(
            norm("Ann.Lee+promo@Example.COM").as_deref(),
            Some("ann.lee@example.com")
        );
        assert_eq!(norm("a+b+c@x.io").as_deref(), Some("a@x.io"));
        assert_eq!(
            norm("o'hara_jr-1@sub.example.co.uk").as_deref(),
            Some("o'hara_jr-1@sub.example.co.uk")
        );
        assert_eq!(norm("j.o.h.n@gmail.com").as_deref(), Some("john@gmail.com"));
        assert_eq!(norm("john.+x@gmail.com").as_deref(), Some("john@gmail.com"));
    }

    #[test]
    fn internationalised_addresses() {
        assert_eq!(
            norm("Info@BÜCHER.de").as_deref(),
            Some("info@xn--bcher-kva.de")
        );
        assert_eq!(
            norm("info@xn--bcher-kva.de").as_deref(),
            Some("info@xn--bcher-kva.de")
        );
        assert_eq!(
            norm("JÖRG@example.com").as_deref(),
            Some("jörg@example.com")
        );
        // Decomposed input composes to the same mailbox.
        assert_eq!(
            norm("jo\u{308}rg@example.com").as_deref(),
            Some("jörg@example.com")
        );
        assert_eq!(
            norm("a@例子。广告").as_deref(),
            Some("a@xn--fsqu00a.xn--4rr70v")
        );
        assert_eq!(
            norm("用户@例子.广告").as_deref(),
            Some("用户@xn--fsqu00a.xn--4rr70v")
        );
    }

    #[test]
    fn invalid_addresses_are_null() {
        for bad in [
            "",
            "   ",
            "@@@",
            "plainaddress",
            "a@b@c.com",
            "@example.com",
            "john@",
            "john@localhost",
            "john smith@example.com",
            "john@exa mple.com",
            "\"john smith\"@example.com",
            "john..smith@example.com",
            ".john@example.com",
            "john.@example.com",
            "+tag@example.com",
            "john@example..com",
            "john@example.com.",
            "john@-example.com",
            "john@example-.com",
            "john@exam_ple.com",
            "john@[192.168.0.1]",
            "john@192.168.0.1",
            "jo(h)n@example.com",
            "jo<h>n@example.com",
            "john😀@example.com",
            "john@😀.com",
            "john@i❤.ws",
            "john@xn--a.com",
            "john\u{0}@example.com",
        ] {
            assert_eq!(norm(bad), None, "{bad:?} should be NULL");
        }
    }

    #[test]
    fn length_limits() {
        let label63 = "a".repeat(63);
        assert!(norm(&format!("x@{label63}.com")).is_some());
        assert_eq!(norm(&format!("x@{label63}a.com")), None);
        assert!(norm(&format!("{}@x.com", "a".repeat(64))).is_some());
        assert_eq!(norm(&format!("{}@x.com", "a".repeat(65))), None);
        let long_domain = format!("{}.com", vec!["b".repeat(60); 5].join("."));
        assert_eq!(norm(&format!("x@{long_domain}")), None);
        assert_eq!(norm(&"a@b.c".repeat(100_000)), None);
        assert_eq!(norm(&format!("x@{}", "é".repeat(100_000))), None);
    }

    #[test]
    fn null_in_null_out_and_every_string_type() -> Result<()> {
        assert_eq!(call_text(&NormalizeEmailFunc::new(), &[None]), None);
        let values = vec![Some("A@B.COM"), None, Some("bad"), Some("x+y@gmail.com")];
        let expected = vec![
            Some("a@b.com".to_owned()),
            None,
            None,
            Some("x@gmail.com".to_owned()),
        ];
        for array in [
            ColumnarValue::Array(Arc::new(StringArray::from(values.clone()))),
            ColumnarValue::Array(Arc::new(LargeStringArray::from(values.clone()))),
            ColumnarValue::Array(Arc::new(StringViewArray::from(values.clone()))),
        ] {
            let out = invoke(&NormalizeEmailFunc::new(), vec![array], 4)?;
            assert_eq!(rows(out, 4), expected);
        }
        let scalar = ColumnarValue::Scalar(ScalarValue::Utf8View(Some("Q@W.io".into())));
        let out = invoke(&NormalizeEmailFunc::new(), vec![scalar], 3)?;
        assert!(
            matches!(out, ColumnarValue::Scalar(ScalarValue::Utf8(Some(ref v))) if v == "q@w.io")
        );
        Ok(())
    }
}
