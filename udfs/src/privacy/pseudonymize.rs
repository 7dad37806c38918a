//! `pseudonymize(text)`: a keyed hash of a value (HMAC-SHA256), the same for the same
//! value within one installation and unguessable without its key.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion_macros::user_doc;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use datafusion::arrow::datatypes::FieldRef;

use super::{map_text, same_presence, text_return_type};

/// The key of the documentation's example (and of sessions that register no key of their
/// own). The server registers the function with its installation's secret key instead.
pub const EXAMPLE_KEY: [u8; 32] = [0; 32];

#[user_doc(
    doc_section(label = "Privacy Functions"),
    description = r#"Replaces a value with a pseudonym: the lowercase hex HMAC-SHA256 of its UTF-8 bytes under the installation's secret key (32 random bytes created in the data directory at first start, `pseudonym.key`). Equal values get equal pseudonyms, so pseudonymised identifiers still join, group and count distinct, but without the key they cannot be reversed or recomputed from a guess. NULL stays NULL. The result has the argument's string type.

Roles without the PII privilege see columns classified `pii:id` through this function. The example below ran with an all-zero key; your installation's pseudonyms differ."#,
    syntax_example = "pseudonymize(value)",
    sql_example = r#"```sql
> SELECT pseudonymize('anna.berg@example.com') AS p;
+------------------------------------------------------------------+
| p                                                                |
+------------------------------------------------------------------+
| 8ebe61dbeb80533c8dcff2f79132fee1341d89786e8f3692450581009ae2322f |
+------------------------------------------------------------------+
```"#,
    argument(
        name = "value",
        description = "Value to pseudonymise: a text expression."
    )
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PseudonymizeFunc {
    signature: Signature,
    key: [u8; 32],
}

impl Default for PseudonymizeFunc {
    fn default() -> Self {
        Self::new(EXAMPLE_KEY)
    }
}

impl PseudonymizeFunc {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
            key,
        }
    }
}

/// Pseudonyms under one key, computed many times: the keyed HMAC state is prepared once
/// and cloned for each value (half the hashing of starting from the key every time).
#[derive(Clone)]
pub struct Pseudonymizer {
    keyed: Hmac<Sha256>,
}

impl Pseudonymizer {
    pub fn new(key: &[u8; 32]) -> Self {
        match Hmac::<Sha256>::new_from_slice(key) {
            Ok(keyed) => Pseudonymizer { keyed },
            Err(_) => unreachable!("HMAC takes a key of any length"),
        }
    }

    /// The pseudonym of `value`: HMAC-SHA256, as bytes.
    pub fn bytes(&self, value: &str) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The pseudonym of `value`, appended to `out` as lowercase hex.
    pub fn hex_into(&self, value: &str, out: &mut String) {
        use std::fmt::Write as _;
        for byte in self.bytes(value) {
            let _ = write!(out, "{byte:02x}");
        }
    }
}

/// The pseudonym of `value` under `key`, as lowercase hex.
pub fn pseudonym(key: &[u8; 32], value: &str, out: &mut String) {
    Pseudonymizer::new(key).hex_into(value, out)
}

impl ScalarUDFImpl for PseudonymizeFunc {
    fn name(&self) -> &str {
        "pseudonymize"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        text_return_type(self.name(), &arg_types[0])
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        same_presence(self.name(), &args)
    }

    fn is_strict(&self) -> bool {
        true
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // The keyed state is prepared once per batch, not once per value.
        let pseudonymizer = Pseudonymizer::new(&self.key);
        map_text(self.name(), &args, |value, out| {
            pseudonymizer.hex_into(value, out)
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::test_util::call_text;

    #[test]
    fn matches_python_hmac_and_depends_on_key() {
        // Computed independently: python's hmac.new(b"\x01" * 32, b"anna",
        // hashlib.sha256).hexdigest().
        let mut out = String::new();
        pseudonym(&[1; 32], "anna", &mut out);
        assert_eq!(out, KEY1_ANNA);
        let a = call_text(&PseudonymizeFunc::new([1; 32]), &[Some("anna")]);
        let b = call_text(&PseudonymizeFunc::new([2; 32]), &[Some("anna")]);
        assert_eq!(a.as_deref(), Some(KEY1_ANNA));
        assert_ne!(a, b);
        assert_eq!(call_text(&PseudonymizeFunc::new([1; 32]), &[None]), None);
    }

    const KEY1_ANNA: &str = "ee3de7beb64ef2f8760ac6013c41e09b11065881c9b1eef0b2455d86b51419c2";
}
