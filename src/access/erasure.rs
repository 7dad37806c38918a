//! Erased people: the suppression list `CALL forget_subject` adds to, and the check that
//! keeps their rows out of everything read or collected afterwards.
//!
//! An entry is the pseudonym of one identifier in its normal form (HMAC-SHA256 under the
//! installation's key, as `pseudonymize` gives it), so the list holds no identifier
//! itself. It is kept in memory and in `tessera.suppressions` (Delta, superusers only).
//!
//! A row is erased when one of its personal-data columns holds a listed identifier,
//! compared in the form the identity model uses, by the column's class:
//! - `pii:email`: `normalize_email(value)`;
//! - `pii:phone`: the value as E.164 (`normalize_phone(value)`, or read with a `+`);
//! - `pii:id`: `trim(value)` or `upper(trim(value))`;
//! - `pii:json` (the event payloads of `tessera.events`): its `email` and `phone` keys.
//!
//! Scans apply the check through [`ErasedFunc`] (see `mask::GuardedTable`), the event
//! collector through [`Suppression::retain`]. A value is looked up by a fast keyed hash
//! first (SipHash-2-4, 128 bits, under a key derived from the installation's, also
//! kept in the table), which rules out almost every value before its pseudonym is
//! computed; phones by the hash of their last seven digits, before the E.164 form
//! (which needs a parse).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::TimestampMicrosecondArray;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::{cast, filter_record_batch, not};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use udfs::privacy::Pseudonymizer;

use super::classes::{ColumnClasses, PiiClass};
use crate::engine::EngineError;
use crate::storage::ManagedTable;

/// The system table of the list.
pub const TABLE: &str = "suppressions";
/// The system table of erasure receipts (written by `forget_subject`).
pub const RECEIPTS: &str = "erasure_receipts";
/// Digits of a phone number compared before it is parsed.
const PHONE_TAIL: usize = 7;
/// The kind of the list's entries for phone tails.
const TAIL_KIND: &str = "phone_tail";

/// How a column's values are compared with the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    Email,
    Phone,
    Id,
    Json,
}

impl Check {
    /// The check of a column of `class`, if its values can identify someone.
    pub fn of(class: &PiiClass) -> Option<Check> {
        match class {
            PiiClass::Email => Some(Check::Email),
            PiiClass::Phone => Some(Check::Phone),
            PiiClass::Id => Some(Check::Id),
            PiiClass::Other(label) if label == "json" => Some(Check::Json),
            PiiClass::Other(_) => None,
        }
    }
}

/// The checked columns of a relation with `classes` and `schema`: (index, check).
pub fn checks(classes: &ColumnClasses, schema: &Schema) -> Vec<(usize, Check)> {
    classes
        .iter()
        .filter_map(|(column, class)| Some((schema.index_of(column).ok()?, Check::of(class)?)))
        .collect()
}

/// The normal form of identifier `value` of type `id_type`, as the identity model
/// spells it (`email`, `phone`, anything else trimmed); `None` if it has none.
pub fn normal_form(id_type: &str, value: &str) -> Option<String> {
    let (mut out, mut scratch) = (String::new(), String::new());
    let ok = match id_type {
        "email" => udfs::normalize::email::normalize_email_into(value, &mut out, &mut scratch),
        "phone" => {
            udfs::normalize::phone::normalize_phone_into(value, None, &mut out, &mut scratch)
        }
        _ => {
            out.push_str(value.trim());
            !out.is_empty()
        }
    };
    ok.then_some(out)
}

/// The text the audit log keeps of `statement`: a call of `forget_subject` without the
/// identifier it erases (any other statement naming the procedure is not kept at all),
/// and `CREATE DESTINATION` without a password in its URL.
pub fn audit_text(statement: &str) -> String {
    if let Some(text) = crate::activate::audit_text(statement) {
        return text;
    }
    if !statement
        .to_ascii_lowercase()
        .contains(crate::engine::sql::FORGET_SUBJECT)
    {
        return statement.to_string();
    }
    match crate::engine::sql::classify(statement) {
        Ok(Some(crate::engine::Command::ForgetSubject { id_type, .. })) => format!(
            "CALL {}('{}', '[erased]')",
            crate::engine::sql::FORGET_SUBJECT,
            id_type.replace('\'', "''")
        ),
        _ => format!(
            "[a statement naming {}, not kept]",
            crate::engine::sql::FORGET_SUBJECT
        ),
    }
}

/// One entry of the table: pseudonym, fast hash, kind.
type Row = ([u8; 32], u128, String);

/// The list in memory.
#[derive(Default)]
struct Listed {
    /// The pseudonyms of the identifiers.
    macs: HashSet<[u8; 32]>,
    /// Their fast hashes.
    fast: HashSet<u128>,
}

/// The suppression list.
pub struct Suppression {
    pseudonymizer: Pseudonymizer,
    fast_key: [u8; 16],
    entries: RwLock<Listed>,
    table: ManagedTable,
}

impl std::fmt::Debug for Suppression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suppression")
            .field("entries", &self.len())
            .finish()
    }
}

fn schema() -> SchemaRef {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("entry", DataType::Utf8, false),
        Field::new("fast", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("erased_at", utc, false),
        Field::new("receipt_id", DataType::Utf8, false),
    ]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if text.len() != 2 * N {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The fast keyed hash of `value`.
fn fast_hash(key: &[u8; 16], value: &str) -> u128 {
    use siphasher::sip128::{Hasher128, SipHasher24};
    let mut h = SipHasher24::new_with_key(key);
    std::hash::Hasher::write(&mut h, value.as_bytes());
    h.finish128().as_u128()
}

/// The last [`PHONE_TAIL`] digits of `value`, if it has that many.
fn phone_tail(value: &str) -> Option<String> {
    let digits: Vec<u8> = value.bytes().filter(u8::is_ascii_digit).collect();
    let tail = digits.get(digits.len().checked_sub(PHONE_TAIL)?..)?;
    Some(String::from_utf8_lossy(tail).into_owned())
}

impl Suppression {
    /// Open (or create) `tessera.suppressions` and load it.
    pub async fn open(
        ctx: &SessionContext,
        data_dir: &Path,
        key: [u8; 32],
    ) -> Result<Self, EngineError> {
        let table = crate::system::delta::open(ctx, data_dir, TABLE, schema()).await?;
        let mut entries = Listed::default();
        let reader = SessionContext::new();
        let mut stream = reader
            .read_table(Arc::new(table.clone()))?
            .select_columns(&["entry", "fast"])?
            .execute_stream()
            .await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let text = |i: usize| -> Result<StringArray> {
                let column =
                    cast(batch.column(i), &DataType::Utf8).map_err(DataFusionError::from)?;
                Ok(datafusion::common::cast::as_string_array(&column)?.clone())
            };
            entries
                .macs
                .extend(text(0)?.iter().flatten().filter_map(unhex::<32>));
            let fast = text(1)?;
            let fast = fast.iter().flatten().filter_map(unhex::<16>);
            entries.fast.extend(fast.map(u128::from_be_bytes));
        }
        let pseudonymizer = Pseudonymizer::new(&key);
        let mut fast_key = [0u8; 16];
        fast_key.copy_from_slice(&pseudonymizer.bytes("tessera:suppression:fast")[..16]);
        Ok(Suppression {
            pseudonymizer,
            fast_key,
            entries: RwLock::new(entries),
            table,
        })
    }

    /// How many entries the list has; it only grows, so this also tells whether it
    /// changed (materialised views record it with their inputs).
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .macs
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pseudonym of `value` (hex), as stored in the list and in receipts.
    pub fn pseudonym(&self, value: &str) -> String {
        hex(&self.pseudonymizer.bytes(value))
    }

    /// Add identifiers `ids` (id_type, normal form) for erasure `receipt_id`: committed to
    /// the table first, then checked by every scan.
    pub async fn add(&self, ids: &[(String, String)], receipt_id: &str) -> Result<(), EngineError> {
        let mut rows: Vec<Row> = Vec::new();
        let mut push = |value: &str, kind: &str| {
            let fast = fast_hash(&self.fast_key, value);
            rows.push((self.pseudonymizer.bytes(value), fast, kind.to_string()));
        };
        for (kind, value) in ids {
            push(value, kind);
            if kind == "phone" {
                if let Some(tail) = phone_tail(value) {
                    push(&tail, TAIL_KIND);
                }
            }
        }
        rows.sort();
        rows.dedup();
        let now = chrono::Utc::now().timestamp_micros();
        let n = rows.len();
        let text = |f: &dyn Fn(&Row) -> String| -> ArrayRef {
            Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
        };
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                text(&|(e, _, _)| hex(e)),
                text(&|(_, f, _)| hex(&f.to_be_bytes())),
                text(&|(_, _, k)| k.clone()),
                Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec![receipt_id; n])),
            ],
        )
        .map_err(DataFusionError::from)?;
        self.table.append(vec![batch]).await?;
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        for (mac, fast, _) in rows {
            entries.macs.insert(mac);
            entries.fast.insert(fast);
        }
        Ok(())
    }

    /// Which rows of `columns` (each with its check) hold a listed identifier.
    pub fn erased(&self, columns: &[(ArrayRef, Check)], rows: usize) -> Result<BooleanArray> {
        let texts = columns
            .iter()
            .map(|(a, c)| Ok((cast(a, &DataType::Utf8)?, *c)))
            .collect::<Result<Vec<_>>>()?;
        let texts = texts
            .iter()
            .map(|(a, c)| Ok((datafusion::common::cast::as_string_array(a)?, *c)))
            .collect::<Result<Vec<(&StringArray, Check)>>>()?;
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut probe = Probe::new(&entries, &self.pseudonymizer, &self.fast_key);
        Ok((0..rows)
            .map(|i| {
                Some(
                    texts
                        .iter()
                        .any(|(a, check)| a.is_valid(i) && probe.matches(*check, a.value(i))),
                )
            })
            .collect())
    }

    /// `statement` with every string literal holding a listed identifier (an email,
    /// phone or id of an erased person) replaced by `'[erased]'`, for the audit log.
    pub fn redact_literals(&self, statement: &str) -> String {
        if self.is_empty() || !statement.contains('\'') {
            return statement.to_string();
        }
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut probe = Probe::new(&entries, &self.pseudonymizer, &self.fast_key);
        let mut out = String::with_capacity(statement.len());
        let mut rest = statement;
        while let Some(start) = rest.find('\'') {
            out.push_str(&rest[..start]);
            let body = &rest[start + 1..];
            // The literal ends at a quote not doubled ('' is a quote inside it).
            let mut end = None;
            let mut i = 0;
            let bytes = body.as_bytes();
            while i < bytes.len() {
                if bytes[i] == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    end = Some(i);
                    break;
                }
                i += 1;
            }
            let Some(end) = end else {
                out.push_str(&rest[start..]);
                return out;
            };
            let value = body[..end].replace("''", "'");
            let listed = [Check::Email, Check::Phone, Check::Id]
                .iter()
                .any(|c| probe.matches(*c, &value));
            if listed {
                out.push_str("'[erased]'");
            } else {
                out.push_str(&rest[start..start + end + 2]);
            }
            rest = &body[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// `batch` without its erased rows, given its relation's `classes`.
    pub fn retain(&self, batch: RecordBatch, classes: &ColumnClasses) -> Result<RecordBatch> {
        let checks = checks(classes, batch.schema().as_ref());
        if self.is_empty() || checks.is_empty() {
            return Ok(batch);
        }
        let columns: Vec<(ArrayRef, Check)> = checks
            .iter()
            .map(|(i, c)| (batch.column(*i).clone(), *c))
            .collect();
        let erased = self.erased(&columns, batch.num_rows())?;
        Ok(filter_record_batch(&batch, &not(&erased)?)?)
    }
}

/// One scan's comparison state (buffers reused across rows).
struct Probe<'a> {
    listed: &'a Listed,
    pseudonymizer: &'a Pseudonymizer,
    fast_key: &'a [u8; 16],
    out: String,
    scratch: String,
}

impl<'a> Probe<'a> {
    fn new(listed: &'a Listed, pseudonymizer: &'a Pseudonymizer, fast_key: &'a [u8; 16]) -> Self {
        Probe {
            listed,
            pseudonymizer,
            fast_key,
            out: String::new(),
            scratch: String::new(),
        }
    }

    fn listed(&self, value: &str) -> bool {
        self.listed.fast.contains(&fast_hash(self.fast_key, value))
            && self.listed.macs.contains(&self.pseudonymizer.bytes(value))
    }

    fn matches(&mut self, check: Check, value: &str) -> bool {
        self.out.clear();
        match check {
            Check::Email => {
                udfs::normalize::email::normalize_email_into(
                    value,
                    &mut self.out,
                    &mut self.scratch,
                ) && self.listed(&self.out)
            }
            Check::Phone => {
                if !phone_tail(value).is_some_and(|t| self.listed(&t)) {
                    return false;
                }
                [value.to_string(), format!("+{}", value.trim())]
                    .iter()
                    .any(|v| {
                        self.out.clear();
                        udfs::normalize::phone::normalize_phone_into(
                            v,
                            None,
                            &mut self.out,
                            &mut self.scratch,
                        ) && self.listed(&self.out)
                    })
            }
            Check::Id => {
                let t = value.trim();
                !t.is_empty()
                    && (self.listed(t)
                        || (t.bytes().any(|b| b.is_ascii_lowercase())
                            && self.listed(&t.to_ascii_uppercase())))
            }
            Check::Json => match serde_json::from_str::<serde_json::Value>(value) {
                Ok(serde_json::Value::Object(map)) => {
                    [("email", Check::Email), ("phone", Check::Phone)]
                        .iter()
                        .any(|(key, check)| {
                            map.get(*key)
                                .and_then(|v| v.as_str())
                                .is_some_and(|v| self.matches(*check, v))
                        })
                }
                _ => false,
            },
        }
    }
}

/// `erased(column, ...)`: whether a row holds a listed identifier, each argument
/// compared by its check. Built by the masking rule for one scan, never registered (so
/// no one can probe the list with it).
#[derive(Debug)]
pub struct ErasedFunc {
    suppression: Arc<Suppression>,
    checks: Vec<Check>,
    signature: Signature,
}

impl ErasedFunc {
    pub fn new(suppression: Arc<Suppression>, checks: Vec<Check>) -> Self {
        ErasedFunc {
            suppression,
            checks,
            signature: Signature::variadic_any(Volatility::Volatile),
        }
    }
}

impl PartialEq for ErasedFunc {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.suppression, &other.suppression) && self.checks == other.checks
    }
}
impl Eq for ErasedFunc {}
impl std::hash::Hash for ErasedFunc {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.suppression) as usize).hash(state);
        self.checks.hash(state);
    }
}

impl ScalarUDFImpl for ErasedFunc {
    fn name(&self) -> &str {
        "erased"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() != self.checks.len() {
            return Err(DataFusionError::Internal(format!(
                "erased: {} arguments for {} checks",
                args.args.len(),
                self.checks.len()
            )));
        }
        let n = args.number_rows;
        let columns = args
            .args
            .iter()
            .zip(&self.checks)
            .map(|(a, c)| Ok((a.to_array(n)?, *c)))
            .collect::<Result<Vec<_>>>()?;
        let out = self.suppression.erased(&columns, n)?;
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms_follow_the_identity_model() {
        assert_eq!(
            normal_form("email", " Ann.Lee@Example.COM ").as_deref(),
            Some("ann.lee@example.com")
        );
        assert_eq!(
            normal_form("phone", "+1 303 743 8289").as_deref(),
            Some("+13037438289")
        );
        assert_eq!(
            normal_form("customer_id", "  C-17 ").as_deref(),
            Some("C-17")
        );
        assert_eq!(normal_form("email", "not an address"), None);
    }

    #[test]
    fn the_audit_log_never_sees_what_is_erased() {
        assert_eq!(
            audit_text("CALL forget_subject('email', 'anna@example.com')"),
            "CALL forget_subject('email', '[erased]')"
        );
        assert_eq!(
            audit_text("call FORGET_SUBJECT('email', 'anna@example.com'"),
            "[a statement naming forget_subject, not kept]"
        );
        assert_eq!(audit_text("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn hex_round_trips() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 7) as u8);
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex::<32>("zz"), None);
        assert_eq!(
            unhex::<16>(&hex(&7u128.to_be_bytes())),
            Some(7u128.to_be_bytes())
        );
    }

    #[test]
    fn phone_tails_are_the_last_digits() {
        assert_eq!(phone_tail("(303) 743-8289").as_deref(), Some("7438289"));
        assert_eq!(phone_tail("+13037438289").as_deref(), Some("7438289"));
        assert_eq!(phone_tail("12345"), None);
    }
}
