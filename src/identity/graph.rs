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
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, AsArray, LargeStringArray, StringArray, StringViewArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use twox_hash::XxHash3_128;

use super::components;
use super::rules::Rules;

/// The columns an edges relation must have, in this order in every batch given to
/// [`super::ingest::Chunk::ingest`].
pub const EDGE_COLUMNS: [&str; 4] = ["source", "record_key", "id_type", "id_value"];

/// No previous unified id (ids are sequence numbers; the oldest is the smallest).
pub const NO_ID: u64 = u64::MAX;
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

/// [`pair_hash`] of two texts of at most 12 bytes given by their string views
/// ([`Strings::short`]), when joined they take 9 to 16 bytes (most records' source and
/// key): XXH3-128 computed on the joined bytes held in registers. Written to a buffer
/// and read back at once, they stalled the read: a load spanning several smaller
/// stores waits until those reach the cache, behind every store before them (`pair_hash`
/// had a fifth of the read's profile; part of that wait moved to later loads, and the
/// read of 30M edge rows gained about 0.1 s).
pub fn short_pair_hash(a: u128, b: u128) -> Option<u128> {
    let (la, lb) = (a as u32 as usize, b as u32 as usize);
    let len = la + 1 + lb;
    if la > 12 || lb > 12 || !(9..=16).contains(&len) {
        return None;
    }
    // A view holds its length in its low 4 bytes and an inline text in the next 12.
    let text = |view: u128, len: usize| (view >> 32) & ((1u128 << (8 * len)) - 1);
    let joined =
        text(a, la) | (u128::from(SEPARATOR) << (8 * la)) | (text(b, lb) << (8 * (la + 1)));
    Some(xxh3_128_9_to_16(joined, len))
}

/// XXH3-128 (seed 0, default secret) of the `len` (9 to 16) little-endian bytes of
/// `input`, as the XXH3 specification computes inputs of that length.
fn xxh3_128_9_to_16(input: u128, len: usize) -> u128 {
    const PRIME32_2: u64 = 0x85EB_CA77;
    const PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;
    const PRIME64_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    // Bytes 32..64 of the default secret.
    const SECRET: [u64; 4] = [
        u64::from_le_bytes([0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78]),
        u64::from_le_bytes([0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21]),
        u64::from_le_bytes([0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e]),
        u64::from_le_bytes([0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c]),
    ];
    fn avalanche(mut x: u64) -> u64 {
        x ^= x >> 37;
        x = x.wrapping_mul(0x1656_6791_9E37_79F9);
        x ^ (x >> 32)
    }
    let first = input as u64;
    let last = (input >> (8 * (len - 8))) as u64;
    let flip_low = (SECRET[0] ^ SECRET[1]) ^ first ^ last;
    let flip_high = (SECRET[2] ^ SECRET[3]) ^ last;
    let m = u128::from(flip_low).wrapping_mul(u128::from(PRIME64_1));
    let low = (m as u64).wrapping_add(((len - 1) as u64) << 54);
    let high = ((m >> 64) as u64)
        .wrapping_add((flip_high >> 32) << 32)
        .wrapping_add((flip_high & 0xffff_ffff).wrapping_mul(PRIME32_2));
    let low = low ^ high.swap_bytes();
    let q = ((u128::from(high) << 64) | u128::from(low)).wrapping_mul(u128::from(PRIME64_2));
    (u128::from(avalanche((q >> 64) as u64)) << 64) | u128::from(avalanche(q as u64))
}

/// The seed an identifier type's values are hashed with: the hash of its canonical name.
pub fn type_seed(id_type: &str) -> u64 {
    XxHash3_128::oneshot(id_type.as_bytes()) as u64
}

/// The hash of an `(id_type, id_value)` pair within one run (never stored): the value
/// hashed with its type's seed, so the two need not be copied together first.
pub fn ident_hash(type_seed: u64, value: &str) -> u128 {
    XxHash3_128::oneshot_with_seed(type_seed, value.as_bytes())
}

/// Strings stored end to end.
#[derive(Default)]
pub struct Arena {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Arena {
    /// Room for `strings` strings of `bytes` bytes in all.
    pub fn reserve(&mut self, strings: usize, bytes: usize) {
        self.ends.reserve(strings);
        self.bytes.reserve(bytes);
    }

    pub fn push(&mut self, s: &str) -> u32 {
        self.push_bytes(s.as_bytes())
    }

    /// Push the bytes of a whole `&str` (so that [`Arena::get`] finds valid UTF-8).
    pub fn push_bytes(&mut self, s: &[u8]) -> u32 {
        self.bytes.extend_from_slice(s);
        self.ends.push(self.bytes.len());
        (self.ends.len() - 1) as u32
    }

    /// Append all of `other`'s strings, keeping their order.
    pub fn append(&mut self, other: Arena) {
        let base = self.bytes.len();
        // An arena of empty strings has no bytes but still has its strings.
        if self.ends.is_empty() {
            *self = other;
            return;
        }
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|e| e + base));
    }

    pub fn get(&self, i: u32) -> &str {
        // Only whole `&str`s are pushed, so every slice is valid UTF-8.
        std::str::from_utf8(self.bytes(i)).unwrap_or_default()
    }

    /// The bytes of string `i`.
    pub fn bytes(&self, i: u32) -> &[u8] {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// Identifier values, left in the text they were read into (only a few are ever read:
/// those named in merges and refusals, and all of them if rules have patterns):
/// identifier `i` is value `i - bases[p]` of part `p`, for the last `p` whose base is at
/// most `i`.
#[derive(Default)]
pub struct Values {
    bases: Vec<u32>,
    parts: Vec<TextRefs>,
}

impl Values {
    /// Add the values of identifiers `base..`, in order.
    pub fn append(&mut self, base: u32, part: TextRefs) {
        if !part.lens.is_empty() {
            self.bases.push(base);
            self.parts.push(part);
        }
    }

    pub fn get(&self, i: u32) -> &str {
        let p = self.bases.partition_point(|b| *b <= i) - 1;
        self.parts[p].get(i - self.bases[p])
    }
}

/// Values in texts read end to end (a radix partition's, one per input partition):
/// value `j` is `lens[j]` bytes from byte `at[j]` of the texts taken as one.
#[derive(Default)]
pub struct TextRefs {
    texts: Vec<Vec<u8>>,
    /// Where each text begins in the texts taken as one.
    starts: Vec<u32>,
    pub at: Vec<u32>,
    pub lens: Vec<u16>,
}

impl TextRefs {
    /// Texts holding whole UTF-8 values end to end, and no values yet; `None` if they
    /// hold 4 GiB or more in all.
    pub fn new(texts: Vec<Vec<u8>>) -> Option<Self> {
        let mut starts = Vec::with_capacity(texts.len());
        let mut total = 0u32;
        for t in &texts {
            starts.push(total);
            total = total.checked_add(u32::try_from(t.len()).ok()?)?;
        }
        Some(TextRefs {
            texts,
            starts,
            at: Vec::new(),
            lens: Vec::new(),
        })
    }

    /// Where each text begins in the texts taken as one.
    pub fn starts(&self) -> &[u32] {
        &self.starts
    }

    pub fn get(&self, j: u32) -> &str {
        let (at, len) = (self.at[j as usize], usize::from(self.lens[j as usize]));
        let t = self.starts.partition_point(|s| *s <= at) - 1;
        let start = (at - self.starts[t]) as usize;
        // Whole values were written, so every slice is valid UTF-8.
        std::str::from_utf8(&self.texts[t][start..start + len]).unwrap_or_default()
    }
}

/// A small string-interning table (sources, identifier types).
#[derive(Default)]
pub struct Names {
    pub names: Vec<String>,
    lookup: HashMap<String, u32>,
}

impl Names {
    pub fn intern(&mut self, raw: &str, canonical: impl FnOnce(&str) -> String) -> u32 {
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
pub enum Strings<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl Strings<'_> {
    pub fn get(&self, row: usize) -> Option<&str> {
        match self {
            Strings::Utf8(a) => (!a.is_null(row)).then(|| a.value(row)),
            Strings::Large(a) => (!a.is_null(row)).then(|| a.value(row)),
            Strings::View(a) => (!a.is_null(row)).then(|| a.value(row)),
        }
    }

    /// Whether rows `a` and `b` (both not NULL) hold the same text. Equal views are
    /// equal texts (inline, or the same bytes of the same buffer), so most repeats are
    /// found without reading the text.
    pub fn same(&self, a: usize, b: usize) -> bool {
        match self {
            Strings::View(v) if v.views()[a] == v.views()[b] => true,
            Strings::View(v) => v.value(a) == v.value(b),
            Strings::Utf8(v) => v.value(a) == v.value(b),
            Strings::Large(v) => v.value(a) == v.value(b),
        }
    }

    /// A text of at most 12 bytes as one number (its view), equal for equal texts.
    pub fn short(&self, row: usize) -> Option<u128> {
        match self {
            Strings::View(v) if (v.views()[row] as u32) <= 12 => Some(v.views()[row]),
            _ => None,
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

pub fn strings(column: &dyn Array) -> Strings<'_> {
    match column.data_type() {
        DataType::LargeUtf8 => Strings::Large(column.as_string::<i64>()),
        DataType::Utf8View => Strings::View(column.as_string_view()),
        _ => Strings::Utf8(column.as_string::<i32>()),
    }
}

/// Records and identifiers, and the edges between them, as built by
/// [`super::ingest::build`].
///
/// The nodes are record *occurrences*: runs of consecutive edge rows of one record. A
/// record whose rows are not all adjacent has several; each points to its first one,
/// the canonical occurrence, which stands for the record in the output.
pub struct Graph {
    rules: Rules,
    pub types: Names,
    pub sources: Names,
    pub occ_hash: Vec<u128>,
    pub occ_source: Vec<u32>,
    pub occ_key: Arena,
    /// The canonical occurrence of each occurrence's record.
    pub canon: Vec<u32>,
    /// The unified id each canonical record had after the previous run ([`NO_ID`] if
    /// none).
    pub prev: Vec<u64>,
    pub ident_type: Vec<u32>,
    pub ident_hash: Vec<u64>,
    pub ident_blocked: Vec<bool>,
    pub values: Values,
    /// The occurrences carrying identifier `i` are `members[starts[i]..starts[i + 1]]`.
    pub starts: Vec<u32>,
    pub members: Vec<u32>,
    /// Threads [`Graph::link`] may use (the session's `target_partitions`).
    pub threads: usize,
}

impl Graph {
    pub fn empty(rules: Rules, types: Names, sources: Names) -> Graph {
        Graph {
            rules,
            types,
            sources,
            occ_hash: Vec::new(),
            occ_source: Vec::new(),
            occ_key: Arena::default(),
            canon: Vec::new(),
            prev: Vec::new(),
            ident_type: Vec::new(),
            ident_hash: Vec::new(),
            ident_blocked: Vec::new(),
            values: Values::default(),
            starts: vec![],
            members: Vec::new(),
            threads: 1,
        }
    }

    pub fn node_count(&self) -> usize {
        self.occ_hash.len()
    }

    pub fn identifier_count(&self) -> usize {
        self.ident_type.len()
    }

    /// Whether node `o` stands for its record (the record's first occurrence).
    pub fn is_record(&self, o: u32) -> bool {
        self.canon[o as usize] == o
    }

    fn degree(&self, i: usize) -> u32 {
        self.starts[i + 1] - self.starts[i]
    }

    /// Link the records; the graph's names and records stay for the output.
    ///
    /// Three passes, so that the costly limit checks run only where they can matter:
    /// 1. connected components ignoring the limits;
    /// 2. flag the components that break a limit or hold two previous ids;
    /// 3. link those again from scratch, one identifier at a time in priority order,
    ///    refusing links over a limit and recording merges of previous ids.
    ///
    /// Every component's root is its smallest node (a record's first occurrence, as a
    /// later occurrence is joined to it), in pass 1 and in pass 3 alike.
    ///
    /// A component within every limit comes out of pass 3 unchanged (its value sets
    /// only grow towards the final one, so no link would be refused), and every
    /// identifier's records lie in one component, so this is exactly the result of
    /// running pass 3 alone over the whole graph.
    pub fn link(&mut self) -> Linked {
        let limit: Vec<Option<u32>> = self
            .types
            .names
            .iter()
            .map(|t| self.rules.rule(t).max_per_profile)
            .collect();
        let started = std::time::Instant::now();
        let mut roots = components::roots(
            &self.canon,
            &self.starts,
            &self.members,
            |i| !self.ident_blocked[i] && self.degree(i) >= 2,
            self.threads,
        );
        let mut oldest = oldest_by_root(&roots, &self.prev);
        tracing::debug!(elapsed = ?started.elapsed(), "resolve_identities: components");
        let flagged_roots = self.flag(&roots, &oldest, &limit);
        // Per node, whether its component is flagged, as bits: the lookups at random
        // below stay in a core's cache (1.25 MB at 10M nodes; a byte each missed it).
        let mut flagged = Bits::new(roots.len());
        for (o, &r) in roots.iter().enumerate() {
            if flagged_roots.get(r as usize) {
                flagged.set(o);
            }
        }
        tracing::debug!(
            elapsed = ?started.elapsed(),
            nodes = flagged.count(),
            "resolve_identities: flagged"
        );
        let blocked: Vec<(u32, u32)> = (0..self.identifier_count())
            .filter(|i| self.ident_blocked[*i] && self.degree(*i) >= 2)
            .map(|i| (i as u32, self.degree(i)))
            .collect();
        let (merges, refusals) = if flagged.count() > 0 {
            self.link_with_limits(&mut oldest, &mut roots, &flagged, &limit)
        } else {
            (Vec::new(), Vec::new())
        };
        tracing::debug!(elapsed = ?started.elapsed(), "resolve_identities: limits applied");
        debug_assert!(
            roots
                .iter()
                .enumerate()
                .all(|(o, &r)| r as usize <= o && self.canon[r as usize] == r),
            "a root is its component's smallest node, a record"
        );
        Linked {
            prev: oldest,
            roots,
            merges,
            refusals,
            blocked,
        }
    }

    fn members_of(&self, i: usize) -> &[u32] {
        &self.members[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// Pass 2: by root, whether the component breaks a limit or joins previous ids.
    /// The identifiers are gathered by type on every thread (a share of them each), then
    /// the limited types shared out among the threads, each counting its own.
    fn flag(&self, roots: &[u32], oldest: &[u64], limit: &[Option<u32>]) -> Bits {
        let flagged: Vec<AtomicU64> = (0..roots.len().div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        let flag = |r: usize| {
            flagged[r / 64].fetch_or(1 << (r % 64), Ordering::Relaxed);
        };
        let threads = self.threads.max(1);
        let n_idents = self.identifier_count();
        let share = |k: usize, len: usize| k * len / threads..(k + 1) * len / threads;
        // Per thread, per limited type, the first record of each unblocked identifier
        // of its share: identifiers are distinct values, and all the records of one
        // (unblocked) identifier are in one component.
        let gathered: Vec<Vec<Vec<u32>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|k| {
                    scope.spawn(move || {
                        // Counted first, so no vector is copied as it grows.
                        let mut sizes = vec![0usize; limit.len()];
                        for i in share(k, n_idents) {
                            sizes[self.ident_type[i] as usize] += 1;
                        }
                        let mut by_type: Vec<Vec<u32>> = (0..limit.len())
                            .map(|t| {
                                Vec::with_capacity(if limit[t].is_some() { sizes[t] } else { 0 })
                            })
                            .collect();
                        for i in share(k, n_idents) {
                            let t = self.ident_type[i] as usize;
                            if limit[t].is_some() && !self.ident_blocked[i] {
                                by_type[t].push(self.members[self.starts[i] as usize]);
                            }
                        }
                        by_type
                    })
                })
                .collect();
            handles.into_iter().map(joined).collect()
        });
        // The types, largest first, each to the thread with the fewest identifiers yet.
        let size = |t: usize| gathered.iter().map(|g| g[t].len()).sum::<usize>();
        let mut types: Vec<usize> = (0..limit.len()).filter(|t| size(*t) > 0).collect();
        types.sort_by_key(|t| std::cmp::Reverse(size(*t)));
        let mut load = vec![0usize; threads];
        let mut mine: Vec<Vec<usize>> = vec![Vec::new(); threads];
        for t in types {
            let least = (0..threads).min_by_key(|k| load[*k]).unwrap_or(0);
            load[least] += size(t);
            mine[least].push(t);
        }
        let has_prev = self.prev.iter().any(|p| *p != NO_ID);
        let count = |k: usize| {
            if k == 0 && has_prev {
                for (o, &root) in roots.iter().enumerate() {
                    let p = self.prev[o];
                    if p != NO_ID && p != oldest[root as usize] {
                        flag(root as usize);
                    }
                }
            }
            // Per root, the type being counted (plus one) in the high half and its
            // count in the low half: a count left from an earlier type restarts, so
            // none is reset.
            let mut counts = filled(if mine[k].is_empty() { 0 } else { roots.len() }, 0u64);
            for &t in &mine[k] {
                let Some(max) = limit[t] else { continue };
                let stamp = (t as u64 + 1) << 32;
                for &m in gathered.iter().flat_map(|g| &g[t]) {
                    let r = roots[m as usize] as usize;
                    let c = if counts[r] >> 32 == stamp >> 32 {
                        counts[r] + 1
                    } else {
                        stamp | 1
                    };
                    counts[r] = c;
                    if c as u32 > max {
                        flag(r);
                    }
                }
            }
        };
        std::thread::scope(|scope| {
            let count = &count;
            let handles: Vec<_> = (1..threads)
                .map(|k| scope.spawn(move || count(k)))
                .collect();
            count(0);
            handles.into_iter().for_each(joined);
        });
        Bits(flagged.into_iter().map(AtomicU64::into_inner).collect())
    }

    /// Pass 3: link the flagged nodes' components again from scratch, one identifier at
    /// a time in priority order (ties broken by hash, so the input order does not
    /// matter), refusing links that would break a limit; set their `roots` (each new
    /// component's smallest node), and the oldest previous id of each new root in
    /// `oldest`.
    ///
    /// The flagged nodes are numbered anew, one component after another, so that this
    /// pass's union-find and value sets are small dense arrays rather than entries
    /// scattered over every record.
    fn link_with_limits(
        &self,
        oldest: &mut [u64],
        roots: &mut [u32],
        flagged: &Bits,
        limit: &[Option<u32>],
    ) -> (Vec<Merge>, Vec<Refusal>) {
        let n = self.node_count();
        let priority: Vec<i64> = self
            .types
            .names
            .iter()
            .map(|t| self.rules.rule(t).priority)
            .collect();
        let t0 = std::time::Instant::now();
        let mut nodes: Vec<u32> = flagged.ones().map(|o| o as u32).collect();
        nodes.sort_unstable_by_key(|o| (roots[*o as usize], *o));
        let mut local = vec![u32::MAX; n];
        for (l, &o) in nodes.iter().enumerate() {
            local[o as usize] = l as u32;
        }
        let local = local;
        let mut luf = UnionFind {
            parent: (0..nodes.len() as u32).collect(),
            size: vec![1; nodes.len()],
            prev: nodes.iter().map(|o| self.prev[*o as usize]).collect(),
        };
        // One pass over the identifiers of flagged components (an unblocked identifier's
        // records are all in one component, so its first says): the links to make, in
        // order, and each flagged node's own values of limited types.
        // The scan is split across threads; each finds its range's links (with their
        // records' local numbers, in the order they link) and values.
        // A link: priority, hash, identifier, and its records in `lists[thread]`.
        type Link = (Reverse<i64>, u64, u32, u32, u32, u32);
        type Found = (Vec<Link>, Vec<u32>, Vec<(u32, u32, u32)>);
        let scan = |thread: usize, range: std::ops::Range<usize>| {
            let (mut order, mut list, mut owned): Found = (Vec::new(), Vec::new(), Vec::new());
            let mut recs: Vec<(u128, u32)> = Vec::new();
            for i in range {
                let members = self.members_of(i);
                if self.ident_blocked[i]
                    || !members.first().is_some_and(|m| flagged.get(*m as usize))
                {
                    continue;
                }
                let t = self.ident_type[i];
                if members.len() >= 2 {
                    let start = list.len() as u32;
                    // The order of the links decides which give way to a limit: make
                    // it independent of the input order. Two records are linked or not
                    // whatever their order, so only longer lists are sorted (by record
                    // hash).
                    if members.len() > 2 {
                        recs.clear();
                        recs.extend(
                            members
                                .iter()
                                .map(|r| (self.occ_hash[*r as usize], local[*r as usize])),
                        );
                        recs.sort_unstable();
                        list.extend(recs.iter().map(|(_, l)| *l));
                    } else {
                        list.extend(members.iter().map(|r| local[*r as usize]));
                    }
                    let len = members.len() as u32;
                    let key = (Reverse(priority[t as usize]), self.ident_hash[i]);
                    order.push((key.0, key.1, i as u32, thread as u32, start, len));
                }
                if limit[t as usize].is_some() {
                    owned.extend(members.iter().map(|&m| (local[m as usize], t, i as u32)));
                }
            }
            (order, list, owned)
        };
        let n_idents = self.identifier_count();
        let per_thread = n_idents.div_ceil(self.threads.max(1)).max(1);
        let found: Vec<Found> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n_idents)
                .step_by(per_thread)
                .enumerate()
                .map(|(thread, start)| {
                    scope.spawn(move || scan(thread, start..(start + per_thread).min(n_idents)))
                })
                .collect();
            handles.into_iter().map(joined).collect()
        });
        tracing::debug!(elapsed = ?t0.elapsed(), nodes = nodes.len(), "resolve_identities: pass 3 scanned");
        let mut order = Vec::new();
        let mut lists = Vec::new();
        let mut sets = ValueSets {
            sets: vec![Vec::new(); nodes.len()],
        };
        for (links, list, owned) in found {
            order.extend(links);
            lists.push(list);
            for (l, t, i) in owned {
                sets.sets[l as usize].push((t, i));
            }
        }
        order.sort_unstable();
        for own in &mut sets.sets {
            own.sort_unstable();
        }
        // A record seen in several places: join its occurrences first, whatever the limits
        // (they are in one component, so its canonical occurrence is flagged too).
        for (l, &o) in nodes.iter().enumerate() {
            let c = self.canon[o as usize];
            if c != o {
                let (rc, ro) = (luf.find(local[c as usize]), luf.find(l as u32));
                if rc != ro {
                    let merged = union_sorted(sets.get(rc), sets.get(ro));
                    let root = luf.union(rc, ro);
                    sets.set(root, merged, rc, ro);
                }
            }
        }
        tracing::debug!(elapsed = ?t0.elapsed(), links = order.len(), "resolve_identities: pass 3 sorted");

        let mut merges = Vec::new();
        let mut refusals: HashMap<u32, Refusal> = HashMap::new();
        let mut heads: Vec<u32> = Vec::new();
        for (_, _, ident, thread, start, len) in order {
            let members = &lists[thread as usize][start as usize..(start + len) as usize];
            heads.clear();
            for r in members {
                let root = luf.find(*r);
                if !heads.contains(&root) {
                    heads.push(root);
                }
            }
            let Some((&first, rest)) = heads.split_first() else {
                continue;
            };
            let mut acc = first;
            for &other in rest {
                let other = luf.find(other);
                if other == acc {
                    continue;
                }
                let (a, b) = (sets.get(acc), sets.get(other));
                let merged = union_sorted(a, b);
                if let Some((t, count)) = over_limit(&merged, a, b, limit) {
                    let r = refusals.entry(ident).or_insert_with(|| Refusal {
                        ident,
                        over_type: t,
                        values: count,
                        limit: limit[t as usize].unwrap_or(0),
                        links: 0,
                        records: members.len() as u32,
                    });
                    r.links += 1;
                    continue;
                }
                let (pa, pb) = (luf.prev[acc as usize], luf.prev[other as usize]);
                if pa != NO_ID && pb != NO_ID && pa != pb {
                    merges.push(Merge {
                        merged: pa.max(pb),
                        surviving: pa.min(pb),
                        ident,
                    });
                }
                let root = luf.union(acc, other);
                sets.set(root, merged, acc, other);
                acc = root;
            }
        }
        // Each new component's root is its smallest node, as in pass 1: nodes are
        // numbered in order within a pass-1 component, so that is the smallest local
        // number, met first.
        let mut smallest = vec![u32::MAX; nodes.len()];
        for (l, &o) in nodes.iter().enumerate() {
            let r = luf.find(l as u32) as usize;
            if smallest[r] == u32::MAX {
                smallest[r] = l as u32;
                oldest[o as usize] = luf.prev[r];
            }
            roots[o as usize] = nodes[smallest[r] as usize];
        }
        let mut refusals: Vec<Refusal> = refusals.into_values().collect();
        refusals.sort_by_key(|r| r.ident);
        (merges, refusals)
    }
}

/// `n` copies of `value`, written: not memory the OS hands out zeroed. Such memory maps
/// one shared zero page until a page is first written; a table read at random before it
/// is written then takes a copy-on-write fault per page, each flushing the TLB of every
/// core running the process (an interrupt per page and core, costly in a VM: most of
/// pass 2's time at 10M records). `black_box` keeps the compiler from turning the fill
/// back into a zeroed allocation.
pub(super) fn filled<T: Copy>(n: usize, value: T) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, std::hint::black_box(value));
    v
}

/// A scoped thread's result (its panic carried on).
pub(super) fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
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

/// The limited-type values held by each component of pass 3, by its local root: sorted
/// `(type, identifier)` pairs.
struct ValueSets {
    sets: Vec<Vec<(u32, u32)>>,
}

impl ValueSets {
    fn get(&self, root: u32) -> &[(u32, u32)] {
        &self.sets[root as usize]
    }

    fn set(&mut self, root: u32, merged: Vec<(u32, u32)>, a: u32, b: u32) {
        self.sets[a as usize] = Vec::new();
        self.sets[b as usize] = Vec::new();
        self.sets[root as usize] = merged;
    }
}

/// By root, the oldest previous id of its component's nodes ([`NO_ID`] if none).
fn oldest_by_root(roots: &[u32], prev: &[u64]) -> Vec<u64> {
    let mut oldest = vec![NO_ID; roots.len()];
    // A space's first run has no previous ids: nothing to look up at random.
    for (o, &p) in prev.iter().enumerate().filter(|(_, p)| **p != NO_ID) {
        let r = roots[o] as usize;
        oldest[r] = oldest[r].min(p);
    }
    oldest
}

/// A set of numbers below a bound, a bit each.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(filled(n.div_ceil(64), 0))
    }

    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The members, in order.
    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(k, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros() as usize;
                    w &= w - 1;
                    k * 64 + b
                })
            })
        })
    }
}

/// Pass 3's union-find over the flagged nodes; each root carries the oldest previous
/// id of its members.
struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
    pub prev: Vec<u64>,
}

impl UnionFind {
    fn find(&mut self, mut x: u32) -> u32 {
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
    /// Each node's root, the smallest node of its profile: nodes with the same root are
    /// one profile.
    pub roots: Vec<u32>,
    /// By root, the oldest previous id of the profile's records.
    pub prev: Vec<u64>,
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
    use crate::identity::ingest::graph_of;

    fn graph(rows: &[(&str, &str, &str, &str)], previous: &[(u128, u64)]) -> Result<Graph> {
        let previous: crate::identity::state::Records = previous.iter().copied().collect();
        graph_of(Rules::default(), &[edges(rows)], &previous)
    }

    /// Group record keys by component, as sorted lists.
    fn components(rows: &[(&str, &str, &str, &str)]) -> (Vec<Vec<String>>, Linked, Graph) {
        let mut g = graph(rows, &[]).expect("ok");
        let linked = g.link();
        let mut groups: HashMap<u32, Vec<String>> = HashMap::new();
        for r in 0..g.node_count() as u32 {
            if g.is_record(r) {
                let key = format!(
                    "{}:{}",
                    g.sources.names[g.occ_source[r as usize] as usize],
                    g.occ_key.get(r)
                );
                groups
                    .entry(linked.roots[r as usize])
                    .or_default()
                    .push(key);
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

    /// Appending keeps every string, empty ones included (an arena of empty strings
    /// has no bytes but is not empty).
    #[test]
    fn appending_arenas_keeps_empty_strings() {
        let mut a = Arena::default();
        a.push("");
        a.push("");
        let mut b = Arena::default();
        b.push("x");
        b.push("");
        a.append(b);
        let got: Vec<&str> = (0..4).map(|i| a.get(i)).collect();
        assert_eq!(got, ["", "", "x", ""]);
        let mut c = Arena::default();
        c.append(a);
        assert_eq!(c.get(2), "x");
    }

    /// Values point into texts taken as one, empty texts and empty values included, and
    /// parts of values append with their identifiers' bases.
    #[test]
    fn values_are_read_where_they_were_written() {
        let mut part = TextRefs::new(vec![b"ab".to_vec(), Vec::new(), "cdé".as_bytes().to_vec()])
            .expect("small");
        assert_eq!(part.starts(), [0, 2, 2]);
        for (at, len) in [(0, 2), (2, 0), (2, 4), (3, 3), (6, 0)] {
            part.at.push(at);
            part.lens.push(len);
        }
        let got: Vec<&str> = (0..5).map(|j| part.get(j)).collect();
        assert_eq!(got, ["ab", "", "cdé", "dé", ""]);
        let mut values = Values::default();
        values.append(0, TextRefs::new(Vec::new()).expect("empty"));
        values.append(0, part);
        let mut more = TextRefs::new(vec![b"xyz".to_vec()]).expect("small");
        more.at.push(1);
        more.lens.push(2);
        values.append(5, more);
        assert_eq!(
            [values.get(2), values.get(4), values.get(5)],
            ["cdé", "", "yz"]
        );
    }

    /// The hash of a short source and key computed from their views equals the one
    /// of their bytes, for every pair of lengths, in UTF-8 of one to four bytes a
    /// character; it declines joined lengths outside 9..=16.
    #[test]
    fn short_pair_hash_is_pair_hash() {
        let mut state = 11u64;
        let mut next = |below: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % below
        };
        let alphabet = ['a', 'Z', '0', '-', '\u{1f}', 'é', '€', '😀', '\0'];
        let mut text = |bytes: usize| {
            let mut t = String::new();
            while t.len() < bytes {
                let c = alphabet[next(alphabet.len() as u64) as usize];
                if t.len() + c.len_utf8() <= bytes {
                    t.push(c);
                }
            }
            t
        };
        let mut buf = Vec::new();
        for la in 0..=13 {
            for lb in 0..=13 {
                for _ in 0..50 {
                    let (a, b) = (text(la), text(lb));
                    let views = StringViewArray::from(vec![a.as_str(), b.as_str()]);
                    let (va, vb) = (views.views()[0], views.views()[1]);
                    let got = short_pair_hash(va, vb);
                    if la <= 12 && lb <= 12 && (9..=16).contains(&(la + 1 + lb)) {
                        assert_eq!(got, Some(pair_hash(&mut buf, &a, &b)), "{a:?} {b:?}");
                    } else {
                        assert_eq!(got, None, "{a:?} {b:?}");
                    }
                }
            }
        }
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
        let mut g = graph(
            &[
                ("crm", "1", "email", "a@x.com"),
                ("crm", "2", "phone", "+4915100000001"),
                ("shop", "o1", "email", "a@x.com"),
                ("shop", "o1", "phone", "+4915100000001"),
            ],
            &[(h1, 7u64), (h2, 3u64)],
        )
        .expect("ok");
        let linked = g.link();
        let root = linked.roots[0];
        assert_eq!(linked.prev[root as usize], 3);
        assert_eq!(linked.merges.len(), 1);
        assert_eq!(
            (linked.merges[0].merged, linked.merges[0].surviving),
            (7, 3)
        );
    }

    #[test]
    fn null_record_key_is_an_error_naming_the_column() {
        let e = graph(&[("crm", "<null>", "email", "a@x.com")], &[])
            .err()
            .expect("should fail")
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
