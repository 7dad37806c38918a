//! Merge protection: which identifier values never link records, which identifier types
//! link first, and how many distinct values of a type one profile may hold.
//!
//! The defaults suit a CDP's usual identifiers; a rules relation passed as the second
//! argument of `resolve_identities` overrides them per `id_type`:
//!
//! | column            | type | meaning                                                  |
//! |-------------------|------|----------------------------------------------------------|
//! | `id_type`         | text | the type the row is about (`*`: a pattern for every type) |
//! | `priority`        | int  | higher links first; lower gives way when a limit is hit   |
//! | `max_per_profile` | int  | distinct values of this type one profile may hold; NULL or 0: no limit |
//! | `blocked_pattern` | text | a regular expression; matching values never link         |
//!
//! Only `id_type` is required; a NULL in another column keeps the default.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{plan_datafusion_err, plan_err, DataFusionError, Result};

use crate::engine::EngineError;
use regex::Regex;

/// The columns a rules relation may have.
pub const RULE_COLUMNS: [&str; 4] = ["id_type", "priority", "max_per_profile", "blocked_pattern"];

/// How one identifier type takes part in linking.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeRule {
    pub priority: i64,
    /// `None`: no limit.
    pub max_per_profile: Option<u32>,
}

/// The merge-protection rules of one `resolve_identities` run.
#[derive(Debug, Clone)]
pub struct Rules {
    types: HashMap<String, TypeRule>,
    other: TypeRule,
    /// Patterns per type; the `*` entry applies to all types.
    patterns: HashMap<String, Vec<Regex>>,
}

impl Default for Rules {
    fn default() -> Self {
        let mut types = HashMap::new();
        let mut put = |names: &[&str], priority: i64, max: Option<u32>| {
            for n in names {
                types.insert(
                    n.to_string(),
                    TypeRule {
                        priority,
                        max_per_profile: max,
                    },
                );
            }
        };
        put(
            &["customer_id", "crm_id", "user_id", "account_id"],
            100,
            Some(1),
        );
        put(&["email"], 80, Some(5));
        put(&["phone"], 60, Some(3));
        put(
            &["anonymous_id", "device_id", "cookie_id", "ad_id"],
            20,
            Some(50),
        );
        // One synthetic identifier per probabilistically matched pair: links last.
        put(&["match_pair"], 10, None);
        Rules {
            types,
            other: TypeRule {
                priority: 40,
                max_per_profile: None,
            },
            patterns: HashMap::new(),
        }
    }
}

impl Rules {
    /// The rule for `id_type` (already lower-cased).
    pub fn rule(&self, id_type: &str) -> &TypeRule {
        self.types.get(id_type).unwrap_or(&self.other)
    }

    /// Check a rules relation's schema: `id_type` must be there and every column must
    /// be one of [`RULE_COLUMNS`], so a misspelt column is an error, not a silent default.
    pub fn check_schema(relation: &str, schema: &Schema) -> Result<()> {
        if schema.field_with_name("id_type").is_err() {
            return Err(DataFusionError::External(Box::new(
                EngineError::UndefinedColumn {
                    relation: relation.to_string(),
                    column: "id_type".into(),
                    detail: format!(
                        " (a rules relation has columns {})",
                        RULE_COLUMNS.join(", ")
                    ),
                },
            )));
        }
        for f in schema.fields() {
            if !RULE_COLUMNS.contains(&f.name().as_str()) {
                return plan_err!(
                    "rules relation \"{relation}\" has an unknown column \"{}\" (expected columns: {})",
                    f.name(),
                    RULE_COLUMNS.join(", ")
                );
            }
        }
        Ok(())
    }

    /// Defaults overridden by the rows of a rules relation.
    pub fn from_batches(relation: &str, batches: &[RecordBatch]) -> Result<Rules> {
        let mut rules = Rules::default();
        for batch in batches {
            Self::check_schema(relation, &batch.schema())?;
            let column = |name: &str, ty: &DataType| -> Result<Option<_>> {
                match batch.column_by_name(name) {
                    None => Ok(None),
                    Some(c) => cast(c, ty).map(Some).map_err(|e| {
                        plan_datafusion_err!(
                            "rules relation \"{relation}\": column \"{name}\" must be {ty}: {e}"
                        )
                    }),
                }
            };
            let id_types = column("id_type", &DataType::Utf8)?;
            let priorities = column("priority", &DataType::Int64)?;
            let maxes = column("max_per_profile", &DataType::Int64)?;
            let patterns = column("blocked_pattern", &DataType::Utf8)?;
            let Some(id_types) = id_types else {
                continue;
            };
            let id_types = id_types.as_string::<i32>();
            for row in 0..batch.num_rows() {
                if id_types.is_null(row) {
                    return plan_err!("rules relation \"{relation}\": id_type is NULL in a row");
                }
                let id_type = id_types.value(row).trim().to_lowercase();
                if let Some(p) = patterns.as_ref().map(|a| a.as_string::<i32>()) {
                    if !p.is_null(row) {
                        let re = Regex::new(p.value(row)).map_err(|e| {
                            plan_datafusion_err!(
                                "rules relation \"{relation}\": bad blocked_pattern for \"{id_type}\": {e}"
                            )
                        })?;
                        rules.patterns.entry(id_type.clone()).or_default().push(re);
                    }
                }
                if id_type == "*" {
                    continue;
                }
                let mut rule = rules.rule(&id_type).clone();
                if let Some(p) = priorities
                    .as_ref()
                    .map(|a| a.as_primitive::<datafusion::arrow::datatypes::Int64Type>())
                {
                    if !p.is_null(row) {
                        rule.priority = p.value(row);
                    }
                }
                if let Some(m) = maxes
                    .as_ref()
                    .map(|a| a.as_primitive::<datafusion::arrow::datatypes::Int64Type>())
                {
                    if !m.is_null(row) {
                        let v = m.value(row);
                        if v < 0 {
                            return plan_err!(
                                "rules relation \"{relation}\": max_per_profile for \"{id_type}\" is negative ({v})"
                            );
                        }
                        rule.max_per_profile = (v > 0).then(|| v.min(u32::MAX as i64) as u32);
                    }
                }
                rules.types.insert(id_type, rule);
            }
        }
        Ok(rules)
    }

    /// Whether `value` of `id_type` (lower-cased) must never link records.
    pub fn is_blocked(&self, id_type: &str, value: &str) -> bool {
        is_default_blocked(Kind::of(id_type), value) || self.matches_pattern(id_type, value)
    }

    /// Whether a custom pattern for `id_type` (or for every type) blocks `value`.
    pub fn matches_pattern(&self, id_type: &str, value: &str) -> bool {
        !self.patterns.is_empty()
            && [id_type, "*"].iter().any(|t| {
                self.patterns
                    .get(*t)
                    .is_some_and(|res| res.iter().any(|re| re.is_match(value)))
            })
    }

    /// Whether any custom pattern is configured (the fast path skips them otherwise).
    pub fn has_patterns(&self) -> bool {
        !self.patterns.is_empty()
    }
}

/// `str::trim` of ASCII text, on its bytes: it also removes the vertical tab, which
/// `u8::is_ascii_whitespace` does not count.
fn trim_ascii_white(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !white(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !white(b)).map_or(start, |e| e + 1);
    &v[start..end]
}

/// Which of the default checks a type's values get besides the placeholders.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Phone,
    Email,
    Other,
}

impl Kind {
    /// The kind of a canonical (lower-cased) identifier type.
    pub fn of(id_type: &str) -> Kind {
        match id_type {
            "phone" => Kind::Phone,
            "email" => Kind::Email,
            _ => Kind::Other,
        }
    }
}

/// Whether the defaults block `value`: placeholders, fake phones and fake emails. Called
/// for every edge row as it is read, so ASCII text (nearly all) is judged as bytes.
pub fn is_default_blocked(kind: Kind, value: &str) -> bool {
    let raw = value.as_bytes();
    // Most values begin and end with an ASCII character that is not white space: then
    // nothing is trimmed (a character of several bytes begins and ends above 0x7f).
    let plain = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii() && !white(b));
    let trimmed = if plain(raw.first()) && plain(raw.last()) {
        raw
    } else if value.is_ascii() {
        trim_ascii_white(raw)
    } else {
        value.trim().as_bytes()
    };
    (may_be_placeholder(trimmed) && is_placeholder(trimmed))
        || match kind {
            Kind::Phone => is_fake_phone(raw),
            Kind::Email => is_fake_email(trimmed),
            Kind::Other => false,
        }
}

/// ASCII white space as `str::trim` sees it (which includes the vertical tab).
fn white(b: &u8) -> bool {
    b.is_ascii_whitespace() || *b == 0x0b
}

/// A quick test most values fail: whether `v` (trimmed) is empty, or short and begins
/// as one of [`is_placeholder`]'s values does (in either case).
fn may_be_placeholder(v: &[u8]) -> bool {
    match v.first() {
        None => true,
        Some(b) => v.len() <= 12 && b"nuat-0?g".contains(&b.to_ascii_lowercase()),
    }
}

/// Values systems write when they have no value.
const PLACEHOLDERS: [&str; 15] = [
    "null",
    "none",
    "nil",
    "unknown",
    "anonymous",
    "undefined",
    "n/a",
    "na",
    "-",
    "--",
    "-1",
    "0",
    "?",
    "test",
    "guest",
];

/// Whether `v` (trimmed) is empty or a placeholder.
fn is_placeholder(v: &[u8]) -> bool {
    if v.is_empty() || v.len() > 12 {
        return v.is_empty();
    }
    // Called for every edge row (tens of millions): compare without allocating.
    PLACEHOLDERS
        .iter()
        .any(|p| p.as_bytes().eq_ignore_ascii_case(v))
}

/// A phone number whose digits are all zero or one digit repeated (`0000000000`,
/// `+1 111-111-1111`): form fillers, not people.
fn is_fake_phone(value: &[u8]) -> bool {
    let mut buf = [0u8; 32];
    let mut n = 0;
    for &d in value.iter().filter(|b| b.is_ascii_digit()) {
        if n == buf.len() {
            return false; // longer than any phone number: not a form filler
        }
        buf[n] = d;
        n += 1;
    }
    let digits = &buf[..n];
    if digits.len() < 5 {
        return true;
    }
    // Skip a leading country code of up to three digits before judging the rest.
    (0..=3.min(digits.len() - 5)).any(|skip| {
        let rest = &digits[skip..];
        rest.iter().all(|d| *d == rest[0]) || rest.windows(2).all(|w| w[1] == w[0] + 1)
    })
}

/// `test@test.com`-like addresses: test, example and no-reply mailboxes (`value`
/// trimmed). `@` is one byte in UTF-8 and never part of another character.
fn is_fake_email(value: &[u8]) -> bool {
    let Some(at) = value.iter().rposition(|b| *b == b'@') else {
        return true;
    };
    let (local, domain) = (&value[..at], &value[at + 1..]);
    const DOMAINS: [&str; 8] = [
        "test.com",
        "example.com",
        "example.org",
        "example.net",
        "test.test",
        "email.com",
        "none.com",
        "noemail.com",
    ];
    const LOCALS: [&str; 10] = [
        "test",
        "noreply",
        "no-reply",
        "donotreply",
        "none",
        "null",
        "nobody",
        "asdf",
        "unknown",
        "noemail",
    ];
    local.is_empty()
        || DOMAINS
            .iter()
            .any(|d| d.as_bytes().eq_ignore_ascii_case(domain))
        || LOCALS
            .iter()
            .any(|l| l.as_bytes().eq_ignore_ascii_case(local))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use std::sync::Arc;

    #[test]
    fn defaults_block_placeholders_and_fakes() {
        let r = Rules::default();
        for (t, v) in [
            ("email", ""),
            ("email", "  "),
            ("email", "NULL"),
            ("email", "test@test.com"),
            ("email", "noreply@shop.de"),
            ("email", "anna@example.com"),
            ("phone", "0000000000"),
            ("phone", "+1 111-111-1111"),
            ("phone", "+4912345678"),
            ("customer_id", "-1"),
            ("anonymous_id", "unknown"),
            ("anonymous_id", "Anonymous"),
        ] {
            assert!(r.is_blocked(t, v), "{t} {v:?} should be blocked");
        }
        for (t, v) in [
            ("email", "anna@gmail.com"),
            ("phone", "+4915112345678"),
            ("customer_id", "C-1001"),
            ("customer_id", "0042"),
            ("anonymous_id", "a1b2c3"),
        ] {
            assert!(!r.is_blocked(t, v), "{t} {v:?} should link");
        }
    }

    #[test]
    fn rules_relation_overrides_defaults() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id_type", DataType::Utf8, true),
            Field::new("priority", DataType::Int64, true),
            Field::new("max_per_profile", DataType::Int64, true),
            Field::new("blocked_pattern", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("Email"),
                    Some("*"),
                    Some("loyalty"),
                ])),
                Arc::new(Int64Array::from(vec![None, None, Some(90)])),
                Arc::new(Int64Array::from(vec![Some(2), None, Some(0)])),
                Arc::new(StringArray::from(vec![None, Some("^internal-"), None])),
            ],
        )
        .expect("ok");
        let r = Rules::from_batches("r", &[batch]).expect("ok");
        assert_eq!(r.rule("email").max_per_profile, Some(2));
        assert_eq!(r.rule("email").priority, 80);
        assert_eq!(r.rule("loyalty").priority, 90);
        assert_eq!(r.rule("loyalty").max_per_profile, None);
        assert!(r.is_blocked("anything", "internal-7"));
        assert!(!r.is_blocked("anything", "external-7"));
        assert!(r.matches_pattern("anything", "internal-7"));
        assert!(!r.matches_pattern("anything", "external-7"));
        same_judgement_as_text_and_as_bytes(&r);
        same_judgement_as_text_and_as_bytes(&Rules::default());
    }

    /// The quick test lets every placeholder through, in any case.
    #[test]
    fn the_quick_test_passes_every_placeholder() {
        let all: Vec<String> = (0u8..=255)
            .flat_map(|a| (0u8..=255).map(move |b| [a, b]))
            .filter_map(|v| String::from_utf8(v.to_vec()).ok())
            .chain(
                PLACEHOLDERS
                    .iter()
                    .flat_map(|p| [p.to_string(), p.to_uppercase(), format!(" {p}\t")]),
            )
            .collect();
        for v in &all {
            let t = v.trim().as_bytes();
            if is_placeholder(t) || t.is_empty() {
                assert!(may_be_placeholder(t), "{v:?}");
            }
        }
    }

    /// Reading judges values by the defaults (ASCII trimmed as bytes) and deduplication
    /// by the patterns: together, and `is_blocked`, they judge as every value trimmed
    /// as text did; the byte trim agrees with `str::trim`.
    fn same_judgement_as_text_and_as_bytes(r: &Rules) {
        let values = [
            "",
            " ",
            "\x0b",
            "null",
            " NULL\t",
            "null\x0b",
            "\x0bnone ",
            "null\u{a0}",
            "\u{3000}unknown",
            "nüll",
            "test@test.com",
            " Test@Example.COM ",
            "a@b\x0b",
            "no-reply@shop.de",
            "@x.de",
            "anna",
            "anna@gmail.com",
            "ánna@gmail.com",
            "0000000000",
            "+1 111-111-1111",
            "+4912345678",
            "+4915112345678",
            "٠٠٠٠٠٠",
            "internal-7",
            " internal-7",
            "C-1001",
            "-1",
            "n/a",
            "N/A\r\n",
            "GUEST",
            "?",
            "x\u{a0}",
            "\u{a0}x",
            "\x0bx",
            "x\x0c",
            "é",
        ];
        for t in ["email", "phone", "customer_id", "anything"] {
            for v in values {
                // The judgement before values were judged as they are read: every
                // value trimmed as text, the type named.
                let trimmed = v.trim().as_bytes();
                let before = is_placeholder(trimmed)
                    || (t == "phone" && is_fake_phone(v.as_bytes()))
                    || (t == "email" && is_fake_email(trimmed))
                    || r.matches_pattern(t, v);
                assert_eq!(
                    is_default_blocked(Kind::of(t), v) || r.matches_pattern(t, v),
                    before,
                    "{t} {v:?}"
                );
                assert_eq!(r.is_blocked(t, v), before, "{t} {v:?}");
                if v.is_ascii() {
                    assert_eq!(trim_ascii_white(v.as_bytes()), v.trim().as_bytes(), "{v:?}");
                }
            }
        }
    }

    #[test]
    fn rules_relation_schema_is_checked() {
        let missing = Schema::new(vec![Field::new("kind", DataType::Utf8, true)]);
        let e = Rules::check_schema("r", &missing)
            .expect_err("should fail")
            .to_string();
        assert!(e.contains("\"id_type\""), "{e}");
        let typo = Schema::new(vec![
            Field::new("id_type", DataType::Utf8, true),
            Field::new("max_per_person", DataType::Int64, true),
        ]);
        let e = Rules::check_schema("r", &typo)
            .expect_err("should fail")
            .to_string();
        assert!(e.contains("max_per_person"), "{e}");
    }
}
