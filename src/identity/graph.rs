//! The identity graph: records joined by the identifiers they share.
//!
//! [`Graph`] takes edge batches `(source, record_key, id_type, id_value)` and interns
//! records and identifiers by a 128-bit hash, so memory grows with the number of
//! distinct keys, not with their text. [`Graph::link`] then runs union-find over the
//! records, one identifier at a time in priority order (highest first, ties broken by
//! hash so the result does not depend on input order). A link that would give one
//! profile more distinct values of a type than its limit allows is refused and logged:
//! since stronger identifiers link first, the weaker one gives way.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use datafusion::arrow::array::{
    Array, AsArray, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use twox_hash::XxHash3_128;

use super::rules::Rules;

/// The columns an edges relation must have, in this order in every batch given to
/// [`Graph::ingest`].
pub const EDGE_COLUMNS: [&str; 4] = ["source", "record_key", "id_type", "id_value"];

/// No previous unified id (ids are sequence numbers; the oldest is the smallest).
pub const NO_ID: u64 = u64::MAX;
const NONE: u32 = u32::MAX;
const SEPARATOR: u8 = 0x1f;

/// Keys that are already uniformly distributed 128-bit hashes use their low 64 bits
/// directly; other keys (record and identifier indices) are mixed by a multiplication,
/// since hash tables take the bucket from the low bits and a tag from the high ones.
#[derive(Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= v as u64;
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 ^= self.0 >> 29;
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
}

pub type PrehashedMap<K, V> = HashMap<K, V, BuildHasherDefault<PrehashedHasher>>;

/// The hash of a `(source, record_key)` or `(id_type, id_value)` pair.
pub fn pair_hash(buf: &mut Vec<u8>, a: &str, b: &str) -> u128 {
    buf.clear();
    buf.extend_from_slice(a.as_bytes());
    buf.push(SEPARATOR);
    buf.extend_from_slice(b.as_bytes());
    XxHash3_128::oneshot(buf)
}

/// Strings stored end to end.
#[derive(Default)]
pub struct Arena {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Arena {
    fn push(&mut self, s: &str) -> u32 {
        self.bytes.extend_from_slice(s.as_bytes());
        self.ends.push(self.bytes.len());
        (self.ends.len() - 1) as u32
    }

    pub fn get(&self, i: u32) -> &str {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        // Only whole `&str`s are pushed, so every slice is valid UTF-8.
        std::str::from_utf8(&self.bytes[start..self.ends[i]]).unwrap_or_default()
    }
}

/// A small string-interning table (sources, identifier types).
#[derive(Default)]
pub struct Names {
    pub names: Vec<String>,
    lookup: HashMap<String, u32>,
}

impl Names {
    fn intern(&mut self, raw: &str, canonical: impl FnOnce(&str) -> String) -> u32 {
        if let Some(i) = self.lookup.get(raw) {
            return *i;
        }
        let name = canonical(raw);
        let i = match self.names.iter().position(|n| *n == name) {
            Some(i) => i as u32,
            None => {
                self.names.push(name);
                (self.names.len() - 1) as u32
            }
        };
        self.lookup.insert(raw.to_string(), i);
        i
    }
}

/// Text columns of any string type, read row by row.
enum Strings<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl Strings<'_> {
    fn get(&self, row: usize) -> Option<&str> {
        match self {
            Strings::Utf8(a) => (!a.is_null(row)).then(|| a.value(row)),
            Strings::Large(a) => (!a.is_null(row)).then(|| a.value(row)),
            Strings::View(a) => (!a.is_null(row)).then(|| a.value(row)),
        }
    }
}

/// Cast a column to a string type unless it already is one.
pub fn as_text(column: &dyn Array) -> Result<std::sync::Arc<dyn Array>> {
    match column.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            Ok(datafusion::arrow::array::make_array(column.to_data()))
        }
        _ => Ok(cast(column, &DataType::Utf8)?),
    }
}

fn strings(column: &dyn Array) -> Strings<'_> {
    match column.data_type() {
        DataType::LargeUtf8 => Strings::Large(column.as_string::<i64>()),
        DataType::Utf8View => Strings::View(column.as_string_view()),
        _ => Strings::Utf8(column.as_string::<i32>()),
    }
}

/// Records and identifiers seen so far, and the edges between them.
pub struct Graph {
    rules: Rules,
    pub types: Names,
    pub sources: Names,
    records: PrehashedMap<u128, u32>,
    pub rec_hash: Vec<u128>,
    /// The unified id each record had after the previous run ([`NO_ID`] if none).
    pub rec_prev: Vec<u64>,
    /// Index into `keys` of the record's key; [`NONE`] for records of the previous run
    /// not seen in this one.
    pub rec_key: Vec<u32>,
    pub rec_source: Vec<u32>,
    pub keys: Arena,
    idents: PrehashedMap<u128, u32>,
    pub ident_type: Vec<u32>,
    ident_hash: Vec<u64>,
    pub ident_blocked: Vec<bool>,
    pub values: Arena,
    edges: Vec<(u32, u32)>,
    last_record: Option<(u128, u32)>,
    last_type: Option<(String, u32)>,
    buf: Vec<u8>,
}

impl Graph {
    /// A graph that remembers the unified ids of a previous run: `(record hash, id)`.
    pub fn new(rules: Rules, previous: impl Iterator<Item = (u128, u64)>) -> Graph {
        let mut g = Graph {
            rules,
            types: Names::default(),
            sources: Names::default(),
            records: PrehashedMap::default(),
            rec_hash: Vec::new(),
            rec_prev: Vec::new(),
            rec_key: Vec::new(),
            rec_source: Vec::new(),
            keys: Arena::default(),
            idents: PrehashedMap::default(),
            ident_type: Vec::new(),
            ident_hash: Vec::new(),
            ident_blocked: Vec::new(),
            values: Arena::default(),
            edges: Vec::new(),
            last_record: None,
            last_type: None,
            buf: Vec::new(),
        };
        for (hash, id) in previous {
            let i = g.rec_hash.len() as u32;
            g.records.insert(hash, i);
            g.rec_hash.push(hash);
            g.rec_prev.push(id);
            g.rec_key.push(NONE);
            g.rec_source.push(NONE);
        }
        g
    }

    pub fn record_count(&self) -> usize {
        self.rec_key.iter().filter(|k| **k != NONE).count()
    }

    pub fn identifier_count(&self) -> usize {
        self.ident_type.len()
    }

    pub fn is_seen(&self, record: u32) -> bool {
        self.rec_key[record as usize] != NONE
    }

    /// Add a batch whose first four columns are [`EDGE_COLUMNS`]. A row with a NULL
    /// `id_type` or `id_value` still makes its record part of the output.
    pub fn ingest(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_columns() < 4 {
            return exec_err!("resolve_identities: an edges batch has fewer than 4 columns");
        }
        let cols: Vec<_> = (0..4)
            .map(|i| as_text(batch.column(i).as_ref()))
            .collect::<Result<_>>()?;
        let [source, key, id_type, value] = [0, 1, 2, 3].map(|i| strings(cols[i].as_ref()));
        for row in 0..batch.num_rows() {
            let (Some(s), Some(k)) = (source.get(row), key.get(row)) else {
                let column = if source.get(row).is_none() {
                    "source"
                } else {
                    "record_key"
                };
                return exec_err!(
                    "resolve_identities: NULL {column} in an edges row (every row needs a source and a record_key)"
                );
            };
            let record = self.record(s, k);
            if let (Some(t), Some(v)) = (id_type.get(row), value.get(row)) {
                let ident = self.identifier(t, v);
                self.edges.push((ident, record));
            }
        }
        Ok(())
    }

    fn record(&mut self, source: &str, key: &str) -> u32 {
        let hash = pair_hash(&mut self.buf, source, key);
        if let Some((h, i)) = self.last_record {
            if h == hash {
                return i;
            }
        }
        let next = self.rec_hash.len() as u32;
        let i = *self.records.entry(hash).or_insert(next);
        if i == next {
            self.rec_hash.push(hash);
            self.rec_prev.push(NO_ID);
            self.rec_key.push(NONE);
            self.rec_source.push(NONE);
        }
        if self.rec_key[i as usize] == NONE {
            self.rec_key[i as usize] = self.keys.push(key);
            self.rec_source[i as usize] = self.sources.intern(source, str::to_string);
        }
        self.last_record = Some((hash, i));
        i
    }

    fn identifier(&mut self, id_type: &str, value: &str) -> u32 {
        // Types repeat row after row: skip the table lookup when it is the last one.
        let t = match &self.last_type {
            Some((raw, t)) if raw == id_type => *t,
            _ => {
                let t = self.types.intern(id_type, |raw| raw.trim().to_lowercase());
                self.last_type = Some((id_type.to_string(), t));
                t
            }
        };
        let type_name = &self.types.names[t as usize];
        let hash = pair_hash(&mut self.buf, type_name, value);
        let next = self.ident_type.len() as u32;
        let i = *self.idents.entry(hash).or_insert(next);
        if i == next {
            self.ident_type.push(t);
            self.ident_hash.push(hash as u64);
            let blocked = self.rules.is_blocked(&self.types.names[t as usize], value);
            self.ident_blocked.push(blocked);
            self.values.push(value);
        }
        i
    }

    /// Link the records. Consumes the edges; the interned names and records stay.
    pub fn link(&mut self) -> Linked {
        let edges = std::mem::take(&mut self.edges);
        let n_idents = self.ident_type.len();
        let (starts, members) = csr(n_idents, edges.iter().map(|(i, r)| (*i, *r)));
        let limit: Vec<Option<u32>> = self
            .types
            .names
            .iter()
            .map(|t| self.rules.rule(t).max_per_profile)
            .collect();
        let priority: Vec<i64> = self
            .types
            .names
            .iter()
            .map(|t| self.rules.rule(t).priority)
            .collect();
        // Each record's own values of limited types, to seed its component.
        let limited = |i: u32| {
            !self.ident_blocked[i as usize] && limit[self.ident_type[i as usize] as usize].is_some()
        };
        let (own_starts, own) = csr(
            self.rec_hash.len(),
            edges
                .iter()
                .filter(|(i, _)| limited(*i))
                .map(|(i, r)| (*r, *i)),
        );
        drop(edges);

        let mut order: Vec<u32> = (0..n_idents as u32)
            .filter(|i| {
                let i = *i as usize;
                !self.ident_blocked[i] && starts[i + 1] - starts[i] >= 2
            })
            .collect();
        order.sort_unstable_by_key(|i| {
            let i = *i as usize;
            (
                Reverse(priority[self.ident_type[i] as usize]),
                self.ident_hash[i],
            )
        });

        let degree = |i: usize| starts[i + 1] - starts[i];
        let blocked: Vec<(u32, u32)> = (0..n_idents)
            .filter(|i| self.ident_blocked[*i] && degree(*i) >= 2)
            .map(|i| (i as u32, degree(i)))
            .collect();
        let mut uf = UnionFind::new(self.rec_hash.len(), self.rec_prev.clone());
        let mut sets = ValueSets::default();
        let mut merges = Vec::new();
        let mut refusals: HashMap<u32, Refusal> = HashMap::new();
        let mut recs: Vec<(u128, u32)> = Vec::new();
        let mut roots: Vec<u32> = Vec::new();
        for ident in order {
            let i = ident as usize;
            recs.clear();
            recs.extend(
                members[starts[i] as usize..starts[i + 1] as usize]
                    .iter()
                    .map(|r| (self.rec_hash[*r as usize], *r)),
            );
            recs.sort_unstable();
            roots.clear();
            for (_, r) in &recs {
                let root = uf.find(*r);
                if !roots.contains(&root) {
                    roots.push(root);
                }
            }
            let Some((&first, rest)) = roots.split_first() else {
                continue;
            };
            let mut acc = first;
            for &other in rest {
                let other = uf.find(other);
                if other == acc {
                    continue;
                }
                sets.ensure(acc, &own_starts, &own, &self.ident_type);
                sets.ensure(other, &own_starts, &own, &self.ident_type);
                let (a, b) = (sets.get(acc), sets.get(other));
                let merged = union_sorted(a, b);
                if let Some((t, count)) = over_limit(&merged, a, b, &limit) {
                    let r = refusals.entry(ident).or_insert_with(|| Refusal {
                        ident,
                        over_type: t,
                        values: count,
                        limit: limit[t as usize].unwrap_or(0),
                        links: 0,
                        records: degree(i),
                    });
                    r.links += 1;
                    continue;
                }
                let (pa, pb) = (uf.prev[acc as usize], uf.prev[other as usize]);
                if pa != NO_ID && pb != NO_ID && pa != pb {
                    merges.push(Merge {
                        merged: pa.max(pb),
                        surviving: pa.min(pb),
                        ident,
                    });
                }
                let root = uf.union(acc, other);
                sets.set(root, merged, acc, other);
                acc = root;
            }
        }
        let mut refusals: Vec<Refusal> = refusals.into_values().collect();
        refusals.sort_by_key(|r| r.ident);
        Linked {
            uf,
            merges,
            refusals,
            blocked,
        }
    }
}

/// Compressed rows: for each key `0..n`, the values paired with it.
fn csr(n: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone) -> (Vec<u32>, Vec<u32>) {
    let mut starts = vec![0u32; n + 1];
    for (k, _) in pairs.clone() {
        starts[k as usize + 1] += 1;
    }
    for i in 0..n {
        starts[i + 1] += starts[i];
    }
    let mut fill = starts.clone();
    let mut values = vec![0u32; starts[n] as usize];
    for (k, v) in pairs {
        values[fill[k as usize] as usize] = v;
        fill[k as usize] += 1;
    }
    (starts, values)
}

/// Sorted, deduplicated `(type, identifier)` pairs.
fn union_sorted(a: &[(u32, u32)], b: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
                *x
            }
            (Some(x), Some(y)) if x < y => {
                i += 1;
                *x
            }
            (Some(_), Some(y)) | (None, Some(y)) => {
                j += 1;
                *y
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (None, None) => break,
        };
        out.push(next);
    }
    out
}

fn count_of(set: &[(u32, u32)], t: u32) -> u32 {
    set.iter().filter(|(ty, _)| *ty == t).count() as u32
}

/// The first type whose limit the merged set breaks. A component already over a limit
/// (one record carrying two customer ids) may keep its values but not gain more.
fn over_limit(
    merged: &[(u32, u32)],
    a: &[(u32, u32)],
    b: &[(u32, u32)],
    limit: &[Option<u32>],
) -> Option<(u32, u32)> {
    let mut k = 0;
    while k < merged.len() {
        let t = merged[k].0;
        let n = merged[k..].iter().take_while(|(ty, _)| *ty == t).count();
        k += n;
        if let Some(max) = limit[t as usize] {
            let n = n as u32;
            if n > max && n > count_of(a, t).max(count_of(b, t)) {
                return Some((t, n));
            }
        }
    }
    None
}

/// The limited-type values held by each component, kept for merged components only
/// (a single record's values come from its own edges when first needed).
#[derive(Default)]
struct ValueSets {
    sets: PrehashedMap<u32, Vec<(u32, u32)>>,
    scratch: Vec<(u32, u32)>,
}

impl ValueSets {
    fn ensure(&mut self, root: u32, own_starts: &[u32], own: &[u32], ident_type: &[u32]) {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.sets.entry(root) {
            let r = root as usize;
            let mut v: Vec<(u32, u32)> = own[own_starts[r] as usize..own_starts[r + 1] as usize]
                .iter()
                .map(|i| (ident_type[*i as usize], *i))
                .collect();
            v.sort_unstable();
            v.dedup();
            slot.insert(v);
        }
    }

    fn get(&self, root: u32) -> &[(u32, u32)] {
        self.sets.get(&root).map_or(&self.scratch, Vec::as_slice)
    }

    fn set(&mut self, root: u32, merged: Vec<(u32, u32)>, a: u32, b: u32) {
        self.sets.remove(&a);
        self.sets.remove(&b);
        self.sets.insert(root, merged);
    }
}

/// Union-find over records; each root carries the oldest previous id of its members.
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
    pub prev: Vec<u64>,
}

impl UnionFind {
    fn new(n: usize, prev: Vec<u64>) -> Self {
        UnionFind {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
            prev,
        }
    }

    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) -> u32 {
        let (big, small) = if self.size[a as usize] >= self.size[b as usize] {
            (a, b)
        } else {
            (b, a)
        };
        self.parent[small as usize] = big;
        self.size[big as usize] += self.size[small as usize];
        self.prev[big as usize] = self.prev[big as usize].min(self.prev[small as usize]);
        big
    }
}

/// Two previous profiles joined by an identifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Merge {
    pub merged: u64,
    pub surviving: u64,
    pub ident: u32,
}

/// An identifier whose links were refused because a profile would exceed a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub ident: u32,
    /// The type whose limit would have been broken.
    pub over_type: u32,
    /// How many values of that type the merged profile would have had.
    pub values: u32,
    pub limit: u32,
    /// How many links this identifier would have made.
    pub links: u64,
    /// How many records carry the identifier.
    pub records: u32,
}

/// The outcome of [`Graph::link`].
pub struct Linked {
    pub uf: UnionFind,
    pub merges: Vec<Merge>,
    pub refusals: Vec<Refusal>,
    /// Blocked identifiers carried by two or more records, with their record count.
    pub blocked: Vec<(u32, u32)>,
}

#[cfg(test)]
pub mod tests_support {
    use super::EDGE_COLUMNS;
    use datafusion::arrow::array::{Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    /// An edges batch; `<null>` stands for NULL.
    pub fn edges(rows: &[(&str, &str, &str, &str)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(
            EDGE_COLUMNS
                .iter()
                .map(|c| Field::new(*c, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let col = |i: usize| {
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| {
                        let v = [r.0, r.1, r.2, r.3][i];
                        (v != "<null>").then_some(v)
                    })
                    .collect::<Vec<_>>(),
            )) as Arc<dyn Array>
        };
        RecordBatch::try_new(schema, vec![col(0), col(1), col(2), col(3)]).expect("ok")
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::edges;
    use super::*;

    /// Group record keys by component, as sorted lists.
    fn components(rows: &[(&str, &str, &str, &str)]) -> (Vec<Vec<String>>, Linked, Graph) {
        let mut g = Graph::new(Rules::default(), std::iter::empty());
        g.ingest(&edges(rows)).expect("ok");
        let mut linked = g.link();
        let mut groups: HashMap<u32, Vec<String>> = HashMap::new();
        for r in 0..g.rec_hash.len() as u32 {
            if g.is_seen(r) {
                let key = format!(
                    "{}:{}",
                    g.sources.names[g.rec_source[r as usize] as usize],
                    g.keys.get(g.rec_key[r as usize])
                );
                groups.entry(linked.uf.find(r)).or_default().push(key);
            }
        }
        let mut out: Vec<Vec<String>> = groups
            .into_values()
            .map(|mut v| {
                v.sort();
                v
            })
            .collect();
        out.sort();
        (out, linked, g)
    }

    #[test]
    fn shared_identifiers_join_records_transitively() {
        let (c, linked, _) = components(&[
            ("crm", "1", "email", "a@x.com"),
            ("shop", "o1", "email", "a@x.com"),
            ("shop", "o1", "phone", "+4915100000001"),
            ("support", "t9", "phone", "+4915100000001"),
            ("web", "s1", "anonymous_id", "<null>"),
            ("crm", "2", "email", "b@x.com"),
        ]);
        assert_eq!(
            c,
            vec![
                vec!["crm:1", "shop:o1", "support:t9"],
                vec!["crm:2"],
                vec!["web:s1"]
            ]
        );
        assert!(linked.refusals.is_empty());
    }

    #[test]
    fn blocked_values_never_link() {
        let (c, _, _) = components(&[
            ("crm", "1", "email", "test@test.com"),
            ("crm", "2", "email", "test@test.com"),
            ("crm", "1", "phone", "0000000000"),
            ("crm", "3", "phone", "0000000000"),
            ("crm", "2", "customer_id", "unknown"),
            ("crm", "3", "customer_id", "unknown"),
        ]);
        assert_eq!(c, vec![vec!["crm:1"], vec!["crm:2"], vec!["crm:3"]]);
    }

    #[test]
    fn a_family_email_does_not_join_two_customers() {
        let (c, linked, g) = components(&[
            ("crm", "1", "customer_id", "C1"),
            ("crm", "1", "email", "family@x.com"),
            ("crm", "2", "customer_id", "C2"),
            ("crm", "2", "email", "family@x.com"),
            ("shop", "o1", "customer_id", "C1"),
            ("shop", "o1", "email", "anna@x.com"),
        ]);
        assert_eq!(c, vec![vec!["crm:1", "shop:o1"], vec!["crm:2"]]);
        assert_eq!(linked.refusals.len(), 1);
        let r = &linked.refusals[0];
        assert_eq!(g.values.get(r.ident), "family@x.com");
        assert_eq!(g.types.names[r.over_type as usize], "customer_id");
        assert_eq!((r.values, r.limit, r.links), (2, 1, 1));
    }

    #[test]
    fn the_sixth_phone_is_refused() {
        // Five records chained by one device id, each with its own phone: limit 3.
        let rows: Vec<(String, String, String, String)> = (0..5)
            .flat_map(|i| {
                [
                    (
                        "web".into(),
                        format!("s{i}"),
                        "device_id".into(),
                        "dev-1".into(),
                    ),
                    (
                        "web".into(),
                        format!("s{i}"),
                        "phone".into(),
                        format!("+49151000000{i}7"),
                    ),
                ]
            })
            .collect();
        let refs: Vec<(&str, &str, &str, &str)> = rows
            .iter()
            .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
            .collect();
        let (c, linked, _) = components(&refs);
        let sizes: Vec<usize> = c.iter().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 5);
        assert_eq!(*sizes.iter().max().expect("ok"), 3, "{c:?}");
        assert_eq!(linked.refusals.len(), 1);
        assert_eq!(linked.refusals[0].links, 2);
    }

    #[test]
    fn previous_ids_survive_and_merges_are_recorded() {
        let mut buf = Vec::new();
        let h1 = pair_hash(&mut buf, "crm", "1");
        let h2 = pair_hash(&mut buf, "crm", "2");
        let mut g = Graph::new(Rules::default(), [(h1, 7u64), (h2, 3u64)].into_iter());
        g.ingest(&edges(&[
            ("crm", "1", "email", "a@x.com"),
            ("crm", "2", "phone", "+4915100000001"),
            ("shop", "o1", "email", "a@x.com"),
            ("shop", "o1", "phone", "+4915100000001"),
        ]))
        .expect("ok");
        let mut linked = g.link();
        let root = linked.uf.find(0);
        assert_eq!(linked.uf.prev[root as usize], 3);
        assert_eq!(linked.merges.len(), 1);
        assert_eq!(
            (linked.merges[0].merged, linked.merges[0].surviving),
            (7, 3)
        );
    }

    #[test]
    fn null_record_key_is_an_error_naming_the_column() {
        let mut g = Graph::new(Rules::default(), std::iter::empty());
        let e = g
            .ingest(&edges(&[("crm", "<null>", "email", "a@x.com")]))
            .expect_err("should fail")
            .to_string();
        assert!(e.contains("record_key"), "{e}");
    }

    #[test]
    fn input_order_does_not_change_the_components() {
        let rows = [
            ("crm", "1", "customer_id", "C1"),
            ("crm", "1", "email", "family@x.com"),
            ("crm", "2", "customer_id", "C2"),
            ("crm", "2", "email", "family@x.com"),
            ("web", "3", "email", "family@x.com"),
        ];
        let (a, _, _) = components(&rows);
        let mut rev = rows;
        rev.reverse();
        let (b, _, _) = components(&rev);
        assert_eq!(a, b);
    }
}
