//! Persisted identity state: which unified id each record had after the last run, the
//! merge history and the refusals of the last run, per identity space (one space per
//! edges relation).
//!
//! A run writes a new generation directory `identity/<space>/gen-N/` (every file
//! fsynced), renames it into place, then points `CURRENT` at it with an atomic rename;
//! a crash at any point leaves the previous generation current. Records are stored by
//! hash, never by their key: the state holds no identifier text except in the merge
//! and refusal logs, which name the identifier that caused them.
//!
//! Unified ids are sequence numbers (older ids are smaller) shown as 16 hex digits
//! after a keyed bijective mix, so they are opaque and do not reveal creation order.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::storage::direct::DirectFile;

/// Summary of one space's last run.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Meta {
    pub space: String,
    pub edges: String,
    pub rules: Option<String>,
    pub salt: u64,
    pub next_seq: u64,
    pub generation: u64,
    pub run_at_micros: i64,
    pub records: u64,
    pub identifiers: u64,
    pub profiles: u64,
    pub duration_ms: u64,
}

/// One line of `tessera.identity_merges`.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeRow {
    pub merged_id: String,
    pub surviving_id: String,
    pub merged_at_micros: i64,
    pub id_type: String,
    pub id_value: String,
}

/// One line of `tessera.identity_refusals`.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusalRow {
    pub id_type: String,
    pub id_value: String,
    pub reason: String,
    pub records: u64,
    pub refused_at_micros: i64,
    /// Hash of (id_type, id_value), for `explain_identity`.
    pub hash: u128,
}

/// The record hash and sequence number of every record of a run, as columns (written
/// and read without conversion).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    hash_hi: ScalarBuffer<u64>,
    hash_lo: ScalarBuffer<u64>,
    seq: ScalarBuffer<u64>,
}

impl Records {
    /// Records from their hashes' halves and their sequence numbers (equal lengths).
    pub fn new(hash_hi: Vec<u64>, hash_lo: Vec<u64>, seq: Vec<u64>) -> Self {
        debug_assert!(hash_hi.len() == seq.len() && hash_lo.len() == seq.len());
        Records {
            hash_hi: hash_hi.into(),
            hash_lo: hash_lo.into(),
            seq: seq.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    pub fn hash(&self, i: usize) -> u128 {
        (u128::from(self.hash_hi[i]) << 64) | u128::from(self.hash_lo[i])
    }

    /// The sequence numbers, in record order.
    pub fn seqs(&self) -> &ScalarBuffer<u64> {
        &self.seq
    }

    fn batch(&self) -> Result<RecordBatch, ArrowError> {
        let column = |b: &ScalarBuffer<u64>| Arc::new(UInt64Array::new(b.clone(), None));
        RecordBatch::try_new(
            records_schema(),
            vec![
                column(&self.hash_hi),
                column(&self.hash_lo),
                column(&self.seq),
            ],
        )
    }
}

impl FromIterator<(u128, u64)> for Records {
    fn from_iter<I: IntoIterator<Item = (u128, u64)>>(iter: I) -> Self {
        let (mut hi, mut lo, mut seq) = (Vec::new(), Vec::new(), Vec::new());
        for (h, s) in iter {
            hi.push((h >> 64) as u64);
            lo.push(h as u64);
            seq.push(s);
        }
        Records::new(hi, lo, seq)
    }
}

/// Everything a space keeps between runs.
#[derive(Debug, Clone, Default)]
pub struct SpaceState {
    pub meta: Meta,
    pub records: Records,
    pub merges: Vec<MergeRow>,
    pub refusals: Vec<RefusalRow>,
}

const MIX1: u64 = 0xbf58_476d_1ce4_e5b9;
const MIX2: u64 = 0x94d0_49bb_1331_11eb;

fn inverse(a: u64) -> u64 {
    // Newton's iteration for the inverse of an odd number modulo 2^64.
    let mut x = a;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

/// The text of unified id `seq` in a space with `salt`.
pub fn encode_id(seq: u64, salt: u64) -> String {
    String::from_utf8_lossy(&encode_id_bytes(seq, salt)).into_owned()
}

/// [`encode_id`] without allocating: 16 lowercase hex digits.
pub fn encode_id_bytes(seq: u64, salt: u64) -> [u8; 16] {
    id_hex(id_number(seq, salt))
}

/// The number an id's text spells in hex: ids sort as text as their numbers do.
pub fn id_number(seq: u64, salt: u64) -> u64 {
    let mut x = seq ^ salt;
    x = (x ^ (x >> 30)).wrapping_mul(MIX1);
    x = (x ^ (x >> 27)).wrapping_mul(MIX2);
    x ^ (x >> 31)
}

/// An id's text from its number (see [`id_number`]): 16 lowercase hex digits.
pub fn id_hex(x: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    std::array::from_fn(|i| HEX[((x >> (60 - 4 * i)) & 0xf) as usize])
}

/// The sequence number behind an id text, if it is one.
pub fn decode_id(id: &str, salt: u64) -> Option<u64> {
    if id.len() != 16 {
        return None;
    }
    let mut x = u64::from_str_radix(id, 16).ok()?;
    x ^= (x >> 31) ^ (x >> 62);
    x = x.wrapping_mul(inverse(MIX2));
    x ^= (x >> 27) ^ (x >> 54);
    x = x.wrapping_mul(inverse(MIX1));
    x ^= (x >> 30) ^ (x >> 60);
    Some(x ^ salt)
}

/// A directory name for a space: its name with anything unusual hex-escaped.
pub fn space_dir(root: &Path, space: &str) -> PathBuf {
    let mut name = String::new();
    for c in space.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            name.push(c);
        } else {
            name.push_str(&format!("%{:x}", c as u32));
        }
    }
    root.join(name)
}

fn io<E: std::error::Error + Send + Sync + 'static>(path: &Path, e: E) -> EngineError {
    EngineError::io(path, std::io::Error::other(e))
}

/// Records per file of the record map, at least (up to one file per core).
const RECORDS_PER_FILE: usize = 1 << 21;

fn records_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("hash_hi", DataType::UInt64, false),
        Field::new("hash_lo", DataType::UInt64, false),
        Field::new("seq", DataType::UInt64, false),
    ]))
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn merges_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("merged_id", DataType::Utf8, false),
        Field::new("surviving_id", DataType::Utf8, false),
        Field::new("merged_at", ts(), false),
        Field::new("id_type", DataType::Utf8, false),
        Field::new("id_value", DataType::Utf8, false),
    ]))
}

fn refusals_file_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id_type", DataType::Utf8, false),
        Field::new("id_value", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("records", DataType::UInt64, false),
        Field::new("refused_at", ts(), false),
        Field::new("hash_hi", DataType::UInt64, false),
        Field::new("hash_lo", DataType::UInt64, false),
    ]))
}

/// Write `batch` as an Arrow IPC file, fsynced, around the page cache ([`DirectFile`]):
/// the record map is hundreds of MB.
fn write_ipc(path: &Path, batch: &RecordBatch) -> Result<(), EngineError> {
    let file = DirectFile::create(path).map_err(|e| io(path, e))?;
    let mut w = FileWriter::try_new(file, &batch.schema()).map_err(|e| io(path, e))?;
    w.write(batch).map_err(|e| io(path, e))?;
    let file = w.into_inner().map_err(|e| io(path, e))?;
    file.finish().map_err(|e| io(path, e))
}

fn read_ipc(path: &Path) -> Result<Vec<RecordBatch>, EngineError> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    let reader = FileReader::try_new(file, None).map_err(|e| io(path, e))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

impl SpaceState {
    /// Load the current generation of the space in `dir`, if there is one; the record
    /// map (the bulk of it) only if `with_records`.
    pub fn load(dir: &Path, with_records: bool) -> Result<Option<SpaceState>, EngineError> {
        let current = dir.join("CURRENT");
        let generation = match std::fs::read_to_string(&current) {
            Ok(g) => g.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&current, e)),
        };
        let gen_dir = dir.join(&generation);
        let meta_path = gen_dir.join("meta.json");
        let meta: Meta =
            serde_json::from_slice(&std::fs::read(&meta_path).map_err(|e| io(&meta_path, e))?)
                .map_err(|e| io(&meta_path, e))?;
        let mut state = SpaceState {
            meta,
            ..Default::default()
        };
        if with_records {
            // records-0.arrow, records-1.arrow, ... (one file, records.arrow, before).
            let mut batches = Vec::new();
            for part in 0.. {
                let path = gen_dir.join(format!("records-{part}.arrow"));
                if part == 0 && !path.exists() {
                    batches = read_ipc(&gen_dir.join("records.arrow"))?;
                    break;
                }
                if !path.exists() {
                    break;
                }
                batches.extend(read_ipc(&path)?);
            }
            let b = concat_batches(&records_schema(), &batches).map_err(|e| io(&gen_dir, e))?;
            let column = |i: usize| b.column(i).as_primitive::<UInt64Type>().values().clone();
            state.records = Records {
                hash_hi: column(0),
                hash_lo: column(1),
                seq: column(2),
            };
        }
        for b in read_ipc(&gen_dir.join("merges.arrow"))? {
            let s = |i: usize| b.column(i).as_string::<i32>().clone();
            let (merged, surviving, kinds, values) = (s(0), s(1), s(3), s(4));
            let at = b
                .column(2)
                .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
            for i in 0..b.num_rows() {
                state.merges.push(MergeRow {
                    merged_id: merged.value(i).into(),
                    surviving_id: surviving.value(i).into(),
                    merged_at_micros: at.value(i),
                    id_type: kinds.value(i).into(),
                    id_value: values.value(i).into(),
                });
            }
        }
        for b in read_ipc(&gen_dir.join("refusals.arrow"))? {
            let s = |i: usize| b.column(i).as_string::<i32>().clone();
            let (types, values, reasons) = (s(0), s(1), s(2));
            let records = b.column(3).as_primitive::<UInt64Type>();
            let at = b
                .column(4)
                .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
            let hi = b.column(5).as_primitive::<UInt64Type>();
            let lo = b.column(6).as_primitive::<UInt64Type>();
            for i in 0..b.num_rows() {
                state.refusals.push(RefusalRow {
                    id_type: types.value(i).into(),
                    id_value: values.value(i).into(),
                    reason: reasons.value(i).into(),
                    records: records.value(i),
                    refused_at_micros: at.value(i),
                    hash: (u128::from(hi.value(i)) << 64) | u128::from(lo.value(i)),
                });
            }
        }
        Ok(Some(state))
    }

    /// Write this state as the space's next generation and make it current; older
    /// generations are deleted before this returns (an erasure relies on it).
    pub fn save(&mut self, dir: &Path) -> Result<(), EngineError> {
        self.save_in(dir, self.files(), false)
    }

    /// [`Self::save`], the older generations deleted in the background (a run's own
    /// save: the rows wait for it).
    pub fn save_deleting_later(&mut self, dir: &Path) -> Result<(), EngineError> {
        self.save_in(dir, self.files(), true)
    }

    /// How many files the record map is written as.
    fn files(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (self.records.len() / RECORDS_PER_FILE).clamp(1, cores)
    }

    /// [`Self::save`] with the record map in `files` files.
    fn save_in(&mut self, dir: &Path, files: usize, later: bool) -> Result<(), EngineError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        self.meta.generation += 1;
        let name = format!("gen-{:010}", self.meta.generation);
        let tmp = dir.join(format!("{name}.tmp"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;

        // The record map is most of the state: written as several files at once (each
        // encodes and copies its part into its own aligned buffer).
        let records = self.records.batch().map_err(|e| io(&tmp, e))?;
        let per_file = records.num_rows().div_ceil(files);
        std::thread::scope(|scope| {
            let writers: Vec<_> = (0..files)
                .map(|f| {
                    let (start, tmp, records) = (f * per_file, &tmp, &records);
                    scope.spawn(move || {
                        let part = records.slice(start, per_file.min(records.num_rows() - start));
                        write_ipc(&tmp.join(format!("records-{f}.arrow")), &part)
                    })
                })
                .collect();
            writers
                .into_iter()
                .try_for_each(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        })?;
        write_ipc(
            &tmp.join("merges.arrow"),
            &self.merges_batch().map_err(|e| io(&tmp, e))?,
        )?;
        write_ipc(
            &tmp.join("refusals.arrow"),
            &self.refusals_file_batch().map_err(|e| io(&tmp, e))?,
        )?;
        let meta_path = tmp.join("meta.json");
        let mut f = File::create(&meta_path).map_err(|e| io(&meta_path, e))?;
        f.write_all(&serde_json::to_vec_pretty(&self.meta).map_err(|e| io(&meta_path, e))?)
            .and_then(|_| f.sync_all())
            .map_err(|e| io(&meta_path, e))?;
        sync_dir(&tmp)?;

        let final_dir = dir.join(&name);
        std::fs::rename(&tmp, &final_dir).map_err(|e| io(&final_dir, e))?;
        let current_tmp = dir.join("CURRENT.tmp");
        let mut f = File::create(&current_tmp).map_err(|e| io(&current_tmp, e))?;
        f.write_all(name.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| io(&current_tmp, e))?;
        std::fs::rename(&current_tmp, dir.join("CURRENT")).map_err(|e| io(dir, e))?;
        sync_dir(dir)?;
        // Older generations are no longer needed (and may hold identifiers since erased).
        // Named now, they may be removed in the background: freeing their files takes a
        // while, and a later run never reuses their names.
        let old: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with("gen-") && n != name
            })
            .map(|e| e.path())
            .collect();
        let delete = move || {
            for path in old {
                let _ = std::fs::remove_dir_all(path);
            }
        };
        if later {
            std::thread::spawn(delete);
        } else {
            delete();
        }
        Ok(())
    }

    pub fn merges_batch(&self) -> Result<RecordBatch, ArrowError> {
        let m = &self.merges;
        let s = |f: fn(&MergeRow) -> &str| {
            Arc::new(m.iter().map(|r| Some(f(r))).collect::<StringArray>()) as Arc<dyn Array>
        };
        let at = TimestampMicrosecondArray::from(
            m.iter().map(|r| r.merged_at_micros).collect::<Vec<_>>(),
        )
        .with_timezone("UTC");
        RecordBatch::try_new(
            merges_schema(),
            vec![
                s(|r| &r.merged_id),
                s(|r| &r.surviving_id),
                Arc::new(at),
                s(|r| &r.id_type),
                s(|r| &r.id_value),
            ],
        )
    }

    fn refusals_file_batch(&self) -> Result<RecordBatch, ArrowError> {
        let r = &self.refusals;
        let s = |f: fn(&RefusalRow) -> &str| {
            Arc::new(r.iter().map(|x| Some(f(x))).collect::<StringArray>()) as Arc<dyn Array>
        };
        let u = |f: fn(&RefusalRow) -> u64| {
            Arc::new(r.iter().map(f).collect::<UInt64Array>()) as Arc<dyn Array>
        };
        let at = TimestampMicrosecondArray::from(
            r.iter().map(|x| x.refused_at_micros).collect::<Vec<_>>(),
        )
        .with_timezone("UTC");
        RecordBatch::try_new(
            refusals_file_schema(),
            vec![
                s(|x| &x.id_type),
                s(|x| &x.id_value),
                s(|x| &x.reason),
                u(|x| x.records),
                Arc::new(at),
                u(|x| (x.hash >> 64) as u64),
                u(|x| x.hash as u64),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_opaque_and_decodable() {
        let salt = 0x1234_5678_9abc_def0;
        let a = encode_id(1, salt);
        let b = encode_id(2, salt);
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        for seq in [0, 1, 2, 99, 1 << 40, u64::MAX - 1] {
            assert_eq!(decode_id(&encode_id(seq, salt), salt), Some(seq));
        }
        assert_eq!(decode_id("not-an-id", salt), None);
        assert_eq!(decode_id("zzzzzzzzzzzzzzzz", salt), None);
    }

    #[test]
    fn state_round_trips_and_a_new_generation_replaces_the_old() {
        let dir = tempfile::tempdir().expect("ok");
        let space = space_dir(dir.path(), "my edges");
        assert!(space.ends_with("my%20edges"));
        assert!(SpaceState::load(&space, true).expect("ok").is_none());
        let mut s = SpaceState {
            meta: Meta {
                space: "my edges".into(),
                salt: 5,
                next_seq: 3,
                ..Default::default()
            },
            records: [(1u128 << 100 | 7, 1), (42, 2)].into_iter().collect(),
            merges: vec![MergeRow {
                merged_id: "b".into(),
                surviving_id: "a".into(),
                merged_at_micros: 1_700_000_000_000_000,
                id_type: "email".into(),
                id_value: "a@x.com".into(),
            }],
            refusals: vec![RefusalRow {
                id_type: "email".into(),
                id_value: "family@x.com".into(),
                reason: "r".into(),
                records: 2,
                refused_at_micros: 5,
                hash: u128::MAX - 3,
            }],
        };
        s.save(&space).expect("ok");
        s.records = [(1u128 << 100 | 7, 1), (42, 2), (9, 3)]
            .into_iter()
            .collect();
        s.save_in(&space, 2, false).expect("ok");
        let back = SpaceState::load(&space, true).expect("ok").expect("ok");
        assert_eq!(back.meta.generation, 2);
        assert!(space.join("gen-0000000002/records-1.arrow").exists());
        assert_eq!(back.records, s.records);
        assert_eq!(back.merges, s.merges);
        assert_eq!(back.refusals, s.refusals);
        let gens: Vec<_> = std::fs::read_dir(&space)
            .expect("ok")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("gen-"))
            .collect();
        assert_eq!(gens, vec!["gen-0000000002".to_string()]);

        // A run's save: current at once, the older generation gone soon after.
        s.save_deleting_later(&space).expect("ok");
        let back = SpaceState::load(&space, true).expect("ok").expect("ok");
        assert_eq!(back.meta.generation, 3);
        assert_eq!(back.records, s.records);
        let old = space.join("gen-0000000002");
        for _ in 0..200 {
            if !old.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        assert!(!old.exists(), "the older generation is still there");
        assert!(space.join("gen-0000000003").exists());
    }

    #[test]
    fn a_record_map_in_one_file_from_before_still_loads() {
        let dir = tempfile::tempdir().expect("ok");
        let mut s = SpaceState {
            records: [(5u128, 1), (6, 1), (u128::MAX, 2)].into_iter().collect(),
            ..Default::default()
        };
        s.save(dir.path()).expect("ok");
        let gen = dir.path().join("gen-0000000001");
        std::fs::rename(gen.join("records-0.arrow"), gen.join("records.arrow")).expect("ok");
        let back = SpaceState::load(dir.path(), true).expect("ok").expect("ok");
        assert_eq!(back.records, s.records);
    }
}
