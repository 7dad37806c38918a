//! Building the identity graph from edge batches on all cores.
//!
//! Reading is split across input partitions, each filling its own [`Chunk`]: a row's
//! record and identifier are hashed; consecutive rows of one record form an
//! *occurrence* (a graph node), and identifier rows are scattered into radix partitions
//! by the top bits of their hash. [`build`] then deduplicates records and identifiers
//! one radix partition at a time on every core, each partition's identifiers in
//! sub-partitions small enough for their hash table to stay in cache.
//! A record seen in several places becomes several occurrences joined up front to the
//! first one (its *canonical* occurrence), so no table of all records is ever probed
//! at random.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::{exec_err, Result};

use super::graph::{
    as_text, ident_hash, joined, pair_hash, short_pair_hash, strings, type_seed, Arena, Graph,
    Names, PrehashedMap, TextRefs, NO_ID,
};
use super::rules::{is_default_blocked, Kind, Rules};
use super::state::Records;

/// Radix partitions: 2^8, so one partition of 30M identifier rows holds ~120k (a hash
/// table of a few MB); few enough that scattering rows into them stays cache-friendly
/// (2^6 read 0.1 s faster at 10M records but deduplicated 0.25 s slower).
const PART_BITS: u32 = 8;
const PARTS: usize = 1 << PART_BITS;

fn part_of(hash: u128) -> usize {
    (hash >> (128 - PART_BITS)) as usize
}

/// One identifier row: 24 bytes, plus its value's text in [`IdentRows::text`].
struct IdentRow {
    hash: [u64; 2],
    /// The chunk's occurrence the row belongs to.
    occ: u32,
    /// The length of the row's value.
    len: u16,
    /// The chunk's index of the row's canonical identifier type, and [`BLOCKED`] if the
    /// default rules block the value (judged as it is read, while it is in the cache).
    ty: u16,
}

/// The bit of [`IdentRow::ty`] that marks a blocked value.
const BLOCKED: u16 = 1 << 15;

/// Identifier rows of one radix partition, in input order, their values end to end.
#[derive(Default)]
struct IdentRows {
    rows: Vec<IdentRow>,
    text: Vec<u8>,
}

/// What one input partition contributes to the graph.
pub struct Chunk {
    types: Names,
    sources: Names,
    last_type: Option<(String, u16)>,
    /// Types and sources of at most 12 bytes by their view ([`Strings::short`]).
    short_types: Vec<(u128, u32)>,
    short_sources: Vec<(u128, u32)>,
    /// Per type, the seed its values are hashed with and the default checks they get.
    type_seeds: Vec<(u64, Kind)>,
    last_source: Option<(String, u32)>,
    last_record: Option<u128>,
    occ_hash: Vec<u128>,
    occ_source: Vec<u32>,
    occ_key: Arena,
    parts: Vec<IdentRows>,
    buf: Vec<u8>,
}

impl Default for Chunk {
    fn default() -> Self {
        Chunk {
            types: Names::default(),
            sources: Names::default(),
            last_type: None,
            short_types: Vec::new(),
            short_sources: Vec::new(),
            type_seeds: Vec::new(),
            last_source: None,
            last_record: None,
            occ_hash: Vec::new(),
            occ_source: Vec::new(),
            occ_key: Arena::default(),
            parts: (0..PARTS).map(|_| IdentRows::default()).collect(),
            buf: Vec::new(),
        }
    }
}

impl Chunk {
    /// A chunk expecting about `rows` edge rows: its vectors are reserved up front
    /// (address space only until written), so they are not copied as they grow.
    pub fn with_expected_rows(rows: usize) -> Self {
        let mut c = Chunk::default();
        c.occ_hash.reserve(rows);
        c.occ_source.reserve(rows);
        c.occ_key.reserve(rows, rows * 16);
        // Radix partitions fill evenly; a quarter more leaves room for chance.
        let per_part = rows / PARTS + rows / PARTS / 4;
        for part in &mut c.parts {
            part.rows.reserve(per_part);
            part.text.reserve(per_part * 32);
        }
        c
    }

    /// Add a batch whose first four columns are the edge columns. A row with a NULL
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
            // Rows of one record are mostly adjacent: hash a record where it changes.
            let repeat = row > 0 && source.same(row, row - 1) && key.same(row, row - 1);
            let hash = if repeat {
                self.last_record.unwrap_or_default()
            } else {
                match (source.short(row), key.short(row)) {
                    (Some(a), Some(b)) => short_pair_hash(a, b),
                    _ => None,
                }
                .unwrap_or_else(|| pair_hash(&mut self.buf, s, k))
            };
            if self.last_record != Some(hash) {
                self.last_record = Some(hash);
                let source = match source.short(row) {
                    Some(view) => short_lookup(&mut self.short_sources, view, || {
                        Ok(self.sources.intern(s, str::to_string))
                    })?,
                    None => self.source(s),
                };
                self.occ_hash.push(hash);
                self.occ_source.push(source);
                self.occ_key.push(k);
            }
            let (Some(t), Some(v)) = (id_type.get(row), value.get(row)) else {
                continue;
            };
            let t = match id_type.short(row) {
                Some(view) => {
                    let types = &mut self.types;
                    short_lookup(&mut self.short_types, view, || id_type_index(types, t))?
                }
                None => self.id_type(t)?,
            };
            let t = t as u16;
            let (seed, kind) = self.type_info(t);
            let hash = ident_hash(seed, v);
            let blocked = if is_default_blocked(kind, v) {
                BLOCKED
            } else {
                0
            };
            let Ok(len) = u16::try_from(v.len()) else {
                let (bytes, ty) = (v.len(), &self.types.names[t as usize]);
                return exec_err!(
                    "resolve_identities: an id_value of {bytes} bytes (source {s}, record_key {k}, id_type {ty}); at most 65,535 are allowed"
                );
            };
            let part = &mut self.parts[part_of(hash)];
            part.text.extend_from_slice(v.as_bytes());
            part.rows.push(IdentRow {
                hash: [(hash >> 64) as u64, hash as u64],
                occ: (self.occ_hash.len() - 1) as u32,
                len,
                ty: t | blocked,
            });
        }
        Ok(())
    }

    fn source(&mut self, raw: &str) -> u32 {
        match &self.last_source {
            Some((last, i)) if last == raw => *i,
            _ => {
                let i = self.sources.intern(raw, str::to_string);
                self.last_source = Some((raw.to_string(), i));
                i
            }
        }
    }

    fn id_type(&mut self, raw: &str) -> Result<u32> {
        // Types repeat row after row: skip the table lookup when it is the last one.
        if let Some((last, t)) = &self.last_type {
            if last == raw {
                return Ok(u32::from(*t));
            }
        }
        let t = id_type_index(&mut self.types, raw)?;
        self.last_type = Some((raw.to_string(), t as u16));
        Ok(t)
    }

    /// The hash seed of the chunk's type `t` (see [`type_seed`]), and its kind.
    fn type_info(&mut self, t: u16) -> (u64, Kind) {
        while self.type_seeds.len() < self.types.names.len() {
            let name = &self.types.names[self.type_seeds.len()];
            self.type_seeds.push((type_seed(name), Kind::of(name)));
        }
        self.type_seeds[t as usize]
    }
}

/// The index of `raw`'s canonical type in `types`.
fn id_type_index(types: &mut Names, raw: &str) -> Result<u32> {
    let t = types.intern(raw, |r| r.trim().to_lowercase());
    if t >= u32::from(BLOCKED) {
        return exec_err!("resolve_identities: more than 32,768 distinct id_type values");
    }
    Ok(t)
}

/// The index cached for a text of at most 12 bytes (its view), or `intern`'s, cached
/// while there are fewer than 64.
fn short_lookup(
    cache: &mut Vec<(u128, u32)>,
    view: u128,
    intern: impl FnOnce() -> Result<u32>,
) -> Result<u32> {
    if let Some((_, i)) = cache.iter().find(|(v, _)| *v == view) {
        return Ok(*i);
    }
    let i = intern()?;
    if cache.len() < 64 {
        cache.push((view, i));
    }
    Ok(i)
}

/// One radix partition's distinct identifiers and their records.
#[derive(Default)]
struct IdentPart {
    hash: Vec<u64>,
    ty: Vec<u32>,
    blocked: Vec<bool>,
    values: TextRefs,
    /// Per identifier, the range of `members` holding its occurrences.
    starts: Vec<u32>,
    members: Vec<u32>,
}

/// Run `work(scratch, p)` for every radix partition on `threads` threads; results in
/// order. Each thread keeps one `S::default()` as scratch space for all its partitions,
/// so its buffers are allocated (and their pages faulted in) once, not per partition.
fn per_partition<S: Default, T: Send>(
    threads: usize,
    work: impl Fn(&mut S, usize) -> T + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let mut out: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut scratch = S::default();
                    let mut mine = Vec::new();
                    loop {
                        let p = next.fetch_add(1, Ordering::Relaxed);
                        if p >= PARTS {
                            break mine;
                        }
                        mine.push((p, work(&mut scratch, p)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    out.sort_unstable_by_key(|(p, _)| *p);
    out.into_iter().map(|(_, t)| t).collect()
}

/// Deduplicate the chunks' records and identifiers into a [`Graph`]. `previous` maps
/// record hashes to the unified ids of the previous run.
pub fn build(
    rules: Rules,
    mut chunks: Vec<Chunk>,
    previous: &Records,
    threads: usize,
) -> Result<Graph> {
    // Global names; per chunk, local index -> global index.
    let mut types = Names::default();
    let mut sources = Names::default();
    let type_map: Vec<Vec<u32>> = chunks
        .iter()
        .map(|c| {
            c.types
                .names
                .iter()
                .map(|n| types.intern(n, str::to_string))
                .collect()
        })
        .collect();

    // Occurrences, concatenated in chunk order.
    let mut occ_base = Vec::with_capacity(chunks.len());
    let mut n_occ = 0usize;
    for c in &chunks {
        occ_base.push(n_occ as u32);
        n_occ += c.occ_hash.len();
    }
    if n_occ >= u32::MAX as usize {
        return exec_err!("resolve_identities: more than 4 billion records in one run");
    }
    // Each chunk's records grouped by radix partition (the chunks shared out among
    // `threads` threads), the previous ids likewise, while the sources and keys are
    // concatenated on this thread.
    let mut sources_keys: Vec<(Vec<u32>, Arena, Vec<u32>)> = chunks
        .iter_mut()
        .map(|c| {
            let source_map = c
                .sources
                .names
                .iter()
                .map(|n| sources.intern(n, str::to_string))
                .collect();
            (
                std::mem::take(&mut c.occ_source),
                std::mem::take(&mut c.occ_key),
                source_map,
            )
        })
        .collect();
    let next = AtomicUsize::new(0);
    let (rec_parts, prev_parts, canon, prev, occ_source, occ_key) = std::thread::scope(|scope| {
        let (chunks, occ_base, next) = (&chunks, &occ_base, &next);
        let radixes: Vec<_> = (0..threads.clamp(1, chunks.len().max(1)))
            .map(|_| {
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(c) = chunks.get(k) else {
                            break mine;
                        };
                        mine.push((
                            k,
                            radix_by(c.occ_hash.len(), occ_base[k], |i| c.occ_hash[i]),
                        ));
                    }
                })
            })
            .collect();
        let previous_parts = scope.spawn(|| radix_prev(previous));
        let atomics = scope.spawn(move || {
            let canon: Vec<AtomicU32> = (0..n_occ as u32).map(AtomicU32::new).collect();
            let prev: Vec<AtomicU64> = (0..n_occ).map(|_| AtomicU64::new(NO_ID)).collect();
            (canon, prev)
        });
        let mut occ_source = Vec::new();
        let mut occ_key = Arena::default();
        for (source, key, source_map) in &mut sources_keys {
            for s in source.iter_mut() {
                *s = source_map[*s as usize];
            }
            if occ_source.is_empty() {
                occ_source = std::mem::take(source);
            } else {
                occ_source.append(source);
            }
            occ_key.append(std::mem::take(key));
        }
        let (canon, prev) = joined(atomics);
        let mut rec_parts: Vec<(usize, Radix)> = radixes.into_iter().flat_map(joined).collect();
        rec_parts.sort_unstable_by_key(|(k, _)| *k);
        let rec_parts: Vec<Radix> = rec_parts.into_iter().map(|(_, r)| r).collect();
        (
            rec_parts,
            joined(previous_parts),
            canon,
            prev,
            occ_source,
            occ_key,
        )
    });
    // The first chunk's vector, which reserved room for its expected rows, usually
    // holds every chunk's records (fewer) without moving.
    let mut occ_hash: Vec<u128> = Vec::new();
    for c in &mut chunks {
        if occ_hash.is_empty() {
            occ_hash = std::mem::take(&mut c.occ_hash);
            occ_hash.reserve(n_occ - occ_hash.len());
        } else {
            occ_hash.extend_from_slice(&c.occ_hash);
            c.occ_hash = Vec::new();
        }
    }
    per_partition(threads, |first: &mut PrehashedMap<u128, u32>, p| {
        first.clear();
        first.reserve(rec_parts.iter().map(|r| r.len(p)).sum());
        for (occ, hash) in rec_parts.iter().flat_map(|r| r.part(p)) {
            let c = *first.entry(hash).or_insert(occ);
            if c != occ {
                canon[occ as usize].store(c, Ordering::Relaxed);
            }
        }
        for (i, hash) in prev_parts.part(p) {
            if let Some(c) = first.get(&hash) {
                prev[*c as usize].store(previous.seqs()[i as usize], Ordering::Relaxed);
            }
        }
    });
    drop(rec_parts);
    drop(prev_parts);

    // Identifiers, one radix partition at a time.
    let mut by_part: Vec<Vec<IdentRows>> = (0..PARTS).map(|_| Vec::new()).collect();
    for c in &mut chunks {
        for (p, rows) in std::mem::take(&mut c.parts).into_iter().enumerate() {
            by_part[p].push(rows);
        }
    }
    let by_part: Vec<std::sync::Mutex<Vec<IdentRows>>> =
        by_part.into_iter().map(std::sync::Mutex::new).collect();
    let parts = per_partition(threads, |scratch, p| {
        let rows = std::mem::take(&mut *by_part[p].lock().unwrap_or_else(|e| e.into_inner()));
        dedup_identifiers(scratch, &rules, &types, &type_map, &occ_base, rows)
    })
    .into_iter()
    .collect::<Result<Vec<_>>>()?;

    // Concatenate the partitions: global identifier = partition base + local index.
    let n_idents: usize = parts.iter().map(|p| p.hash.len()).sum();
    let n_members: usize = parts.iter().map(|p| p.members.len()).sum();
    if n_idents >= u32::MAX as usize || n_members >= u32::MAX as usize {
        return exec_err!("resolve_identities: more than 4 billion identifiers in one run");
    }
    let mut graph = Graph::empty(rules, types, sources);
    graph.threads = threads;
    graph.ident_hash.reserve(n_idents);
    graph.ident_type.reserve(n_idents);
    graph.ident_blocked.reserve(n_idents);
    graph.starts.reserve(n_idents + 1);
    graph.members.reserve(n_members);
    for part in parts {
        let member_base = graph.members.len() as u32;
        graph
            .values
            .append(graph.ident_hash.len() as u32, part.values);
        graph.ident_hash.extend_from_slice(&part.hash);
        graph.ident_type.extend_from_slice(&part.ty);
        graph.ident_blocked.extend_from_slice(&part.blocked);
        graph.starts.extend(
            part.starts[..part.hash.len()]
                .iter()
                .map(|s| s + member_base),
        );
        graph.members.extend_from_slice(&part.members);
    }
    graph.starts.push(graph.members.len() as u32);
    graph.occ_hash = occ_hash;
    graph.occ_source = occ_source;
    graph.occ_key = occ_key;
    graph.canon = canon.into_iter().map(AtomicU32::into_inner).collect();
    graph.prev = prev.into_iter().map(AtomicU64::into_inner).collect();
    Ok(graph)
}

/// Sub-partitions of a radix partition in [`dedup_identifiers`]: 2^5, so each one's hash
/// table (about 3.6k rows of 30M, 32-byte entries) stays in a core's L2 cache. One table
/// for a whole partition (8 MB at 30M rows) missed the cache on most rows.
const SUB_BITS: u32 = 5;
const SUBS: usize = 1 << SUB_BITS;

fn sub_of(hash: [u64; 2]) -> usize {
    ((hash[0] >> (64 - PART_BITS - SUB_BITS)) as usize) & (SUBS - 1)
}

/// An identifier row as [`dedup_identifiers`] reads it: copied into its sub-partition,
/// so each sub-partition is read in one sequential pass.
#[derive(Clone, Copy, Default)]
struct SubRow {
    hash: [u64; 2],
    /// The global occurrence and type.
    occ: u32,
    ty: u32,
    /// Where the value begins in the partition's texts taken as one.
    at: u32,
    /// The length of the value.
    len: u16,
    blocked: bool,
}

/// [`dedup_identifiers`]' buffers, reused from one radix partition to the next.
#[derive(Default)]
struct DedupScratch {
    local_of: PrehashedMap<u128, u32>,
    /// The rows, grouped by sub-partition.
    order: Vec<SubRow>,
    sub_starts: Vec<usize>,
    /// (local identifier, occurrence) per row, for the member lists.
    pairs: Vec<(u32, u32)>,
    counts: Vec<u32>,
    fill: Vec<u32>,
}

fn dedup_identifiers(
    scratch: &mut DedupScratch,
    rules: &Rules,
    types: &Names,
    type_map: &[Vec<u32>],
    occ_base: &[u32],
    chunks: Vec<IdentRows>,
) -> Result<IdentPart> {
    let total: usize = chunks.iter().map(|c| c.rows.len()).sum();
    let mut out = IdentPart::default();
    // The values stay in the text they were read into; identifiers point into it.
    let (rows, texts): (Vec<_>, Vec<_>) = chunks.into_iter().map(|c| (c.rows, c.text)).unzip();
    let Some(values) = TextRefs::new(texts) else {
        return exec_err!(
            "resolve_identities: 4 GiB or more of identifier values in one of 256 partitions"
        );
    };
    out.values = values;
    out.values.at.reserve(total);
    out.values.lens.reserve(total);
    // Room for every row being distinct (address space only, until written).
    out.hash.reserve(total);
    out.ty.reserve(total);
    out.blocked.reserve(total);
    let DedupScratch {
        local_of,
        order,
        sub_starts,
        pairs,
        counts,
        fill,
    } = scratch;
    // Group the rows by sub-partition, each group in input order (a counting sort).
    sub_starts.clear();
    sub_starts.resize(SUBS + 1, 0);
    for rows in &rows {
        for row in rows {
            sub_starts[sub_of(row.hash) + 1] += 1;
        }
    }
    for s in 0..SUBS {
        sub_starts[s + 1] += sub_starts[s];
    }
    order.clear();
    order.resize(total, SubRow::default());
    let mut next: [usize; SUBS] = std::array::from_fn(|s| sub_starts[s]);
    for (c, rows) in rows.iter().enumerate() {
        // Values lie end to end in their text, in row order.
        let mut at = out.values.starts()[c];
        for row in rows {
            let slot = &mut next[sub_of(row.hash)];
            order[*slot] = SubRow {
                hash: row.hash,
                occ: occ_base[c] + row.occ,
                ty: type_map[c][(row.ty & !BLOCKED) as usize],
                at,
                len: row.len,
                blocked: row.ty & BLOCKED != 0,
            };
            *slot += 1;
            at += u32::from(row.len);
        }
    }
    drop(rows);
    pairs.clear();
    pairs.reserve(total);
    for s in 0..SUBS {
        let group = sub_starts[s]..sub_starts[s + 1];
        local_of.clear();
        local_of.reserve(group.len());
        for row in &order[group] {
            let next = out.hash.len() as u32;
            let hash = (u128::from(row.hash[0]) << 64) | u128::from(row.hash[1]);
            let local = *local_of.entry(hash).or_insert(next);
            if local == next {
                out.hash.push(hash as u64);
                out.ty.push(row.ty);
                out.blocked.push(row.blocked);
                out.values.at.push(row.at);
                out.values.lens.push(row.len);
            }
            pairs.push((local, row.occ));
        }
    }
    if rules.has_patterns() {
        for i in 0..out.hash.len() {
            if !out.blocked[i] {
                let (t, v) = (&types.names[out.ty[i] as usize], out.values.get(i as u32));
                out.blocked[i] = rules.matches_pattern(t, v);
            }
        }
    }
    // Counting sort by identifier; rows of one record are adjacent in input order, so
    // a record repeating an identifier is dropped by comparing with the last member.
    let n = out.hash.len();
    counts.clear();
    counts.resize(n + 1, 0);
    for (local, _) in pairs.iter() {
        counts[*local as usize + 1] += 1;
    }
    for i in 0..n {
        counts[i + 1] += counts[i];
    }
    fill.clear();
    fill.extend_from_slice(counts);
    let mut members = vec![u32::MAX; pairs.len()];
    for (local, occ) in pairs.iter() {
        let f = &mut fill[*local as usize];
        let start = counts[*local as usize];
        if *f > start && members[*f as usize - 1] == *occ {
            continue;
        }
        members[*f as usize] = *occ;
        *f += 1;
    }
    // Compact away the dropped repeats.
    let mut starts = Vec::with_capacity(n + 1);
    let mut kept = 0usize;
    for i in 0..n {
        starts.push(kept as u32);
        for j in counts[i]..fill[i] {
            members[kept] = members[j as usize];
            kept += 1;
        }
    }
    starts.push(kept as u32);
    members.truncate(kept);
    out.starts = starts;
    out.members = members;
    Ok(out)
}

/// Items grouped by the radix partition of their hash, in order, each with its hash
/// (so a partition's hashes are read in one pass, not looked up at random).
struct Radix {
    starts: Vec<usize>,
    items: Vec<u32>,
    hashes: Vec<u128>,
}

impl Radix {
    /// Partition `p`'s items and their hashes.
    fn part(&self, p: usize) -> impl Iterator<Item = (u32, u128)> + '_ {
        let range = self.starts[p]..self.starts[p + 1];
        self.items[range.clone()]
            .iter()
            .copied()
            .zip(self.hashes[range].iter().copied())
    }

    fn len(&self, p: usize) -> usize {
        self.starts[p + 1] - self.starts[p]
    }
}

/// Items `base..base + n`, item `base + i` with `hash(i)`.
fn radix_by(n: usize, base: u32, hash: impl Fn(usize) -> u128) -> Radix {
    let mut starts = vec![0usize; PARTS + 1];
    for i in 0..n {
        starts[part_of(hash(i)) + 1] += 1;
    }
    for p in 0..PARTS {
        starts[p + 1] += starts[p];
    }
    let mut fill = starts.clone();
    let (mut items, mut hashes) = (vec![0u32; n], vec![0u128; n]);
    for i in 0..n {
        let h = hash(i);
        let f = &mut fill[part_of(h)];
        items[*f] = base + i as u32;
        hashes[*f] = h;
        *f += 1;
    }
    Radix {
        starts,
        items,
        hashes,
    }
}

fn radix_prev(previous: &Records) -> Radix {
    radix_by(previous.len(), 0, |i| previous.hash(i))
}

/// The graph of some edge batches read as one input partition (small inputs, tests).
pub fn graph_of(rules: Rules, batches: &[RecordBatch], previous: &Records) -> Result<Graph> {
    let mut chunk = Chunk::default();
    for b in batches {
        chunk.ingest(b)?;
    }
    build(rules, vec![chunk], previous, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::graph::tests_support::edges;
    use std::collections::BTreeSet;

    type Row = (&'static str, &'static str, &'static str, &'static str);
    type Row4<'a> = (&'a str, &'a str, &'a str, &'a str);

    /// Profiles as sets of `source:key`, from the graph of `chunks` (one input
    /// partition each).
    fn profiles(chunks: &[&[Row]], threads: usize) -> BTreeSet<BTreeSet<String>> {
        let chunks = chunks
            .iter()
            .map(|rows| {
                let mut c = Chunk::default();
                c.ingest(&edges(rows)).expect("ingest");
                c
            })
            .collect();
        let mut g = build(Rules::default(), chunks, &Records::default(), threads).expect("build");
        let linked = g.link();
        let mut by_root: std::collections::BTreeMap<u32, BTreeSet<String>> = Default::default();
        for o in 0..g.node_count() as u32 {
            if g.is_record(o) {
                let name = &g.sources.names[g.occ_source[o as usize] as usize];
                by_root
                    .entry(linked.roots[o as usize])
                    .or_default()
                    .insert(format!("{name}:{}", g.occ_key.get(o)));
            }
        }
        by_root.into_values().collect()
    }

    fn set(groups: &[&[&str]]) -> BTreeSet<BTreeSet<String>> {
        groups
            .iter()
            .map(|g| g.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    const ROWS: [Row; 9] = [
        ("crm", "1", "email", "a@x.com"),
        ("shop", "o1", "email", "a@x.com"),
        ("crm", "2", "customer_id", "C2"),
        // crm:1 again, not next to its first rows: one record, two occurrences.
        ("crm", "1", "phone", "+4915100000001"),
        ("web", "s1", "phone", "+4915100000001"),
        ("crm", "3", "email", "c@x.com"),
        ("shop", "o2", "email", "c@x.com"),
        ("shop", "o2", "email", "c@x.com"),
        ("web", "s2", "anonymous_id", "<null>"),
    ];

    #[test]
    fn a_record_whose_rows_are_apart_is_one_record() {
        let p = profiles(&[&ROWS], 1);
        assert_eq!(
            p,
            set(&[
                &["crm:1", "shop:o1", "web:s1"],
                &["crm:2"],
                &["crm:3", "shop:o2"],
                &["web:s2"]
            ])
        );
    }

    #[test]
    fn chunks_and_threads_do_not_change_the_profiles() {
        let one = profiles(&[&ROWS], 1);
        for split in 1..ROWS.len() {
            let (a, b) = ROWS.split_at(split);
            assert_eq!(profiles(&[a, b], 2), one, "split at {split}");
            assert_eq!(profiles(&[b, a], 3), one, "split at {split}, reversed");
        }
    }

    #[test]
    fn one_value_under_two_types_is_two_identifiers() {
        // Values are hashed with their type's seed: the type still tells them apart,
        // and types are compared in canonical form.
        let rows: [Row; 4] = [
            ("crm", "1", "customer_id", "A17"),
            ("crm", "2", "anonymous_id", "A17"),
            ("shop", "o1", " Customer_ID ", "A17"),
            ("shop", "o2", "ANONYMOUS_ID", "A17"),
        ];
        assert_eq!(
            profiles(&[&rows], 1),
            set(&[&["crm:1", "shop:o1"], &["crm:2", "shop:o2"]])
        );
    }

    #[test]
    fn limits_apply_only_where_broken() {
        // Two customers share a family email (refused); elsewhere an ordinary profile
        // links normally, and a record repeating an identifier counts once.
        let rows: [Row; 8] = [
            ("crm", "1", "customer_id", "C1"),
            ("crm", "1", "email", "family@x.com"),
            ("crm", "2", "customer_id", "C2"),
            ("crm", "2", "email", "family@x.com"),
            ("shop", "o1", "customer_id", "C1"),
            ("crm", "9", "customer_id", "C9"),
            ("shop", "o9", "customer_id", "C9"),
            ("shop", "o9", "customer_id", "C9"),
        ];
        assert_eq!(
            profiles(&[&rows], 2),
            set(&[&["crm:1", "shop:o1"], &["crm:2"], &["crm:9", "shop:o9"]])
        );
        let mut g =
            graph_of(Rules::default(), &[edges(&rows)], &Records::default()).expect("graph");
        let linked = g.link();
        assert_eq!(linked.refusals.len(), 1);
        assert_eq!(g.values.get(linked.refusals[0].ident), "family@x.com");
        let c9 = (0..g.identifier_count())
            .find(|i| g.values.get(*i as u32) == "C9")
            .expect("C9");
        assert_eq!(
            g.starts[c9 + 1] - g.starts[c9],
            2,
            "repeated rows count once"
        );
    }

    #[test]
    fn threads_do_not_change_limits_on_a_large_graph() {
        // Over 2^16 records, so the passes run on several threads: families of four
        // records sharing an email, every other family with two customer ids, and
        // families chained to the next by a device id.
        let rows: Vec<(String, String, String, String)> = (0..72_000)
            .flat_map(|i: usize| {
                let (family, key) = (i / 4, format!("r{i}"));
                let mut r = vec![
                    (
                        "crm".into(),
                        key.clone(),
                        "email".into(),
                        format!("f{family}@x.com"),
                    ),
                    (
                        "crm".into(),
                        key.clone(),
                        "customer_id".into(),
                        format!("C{}", family * 2 + (family % 2) * (i % 2)),
                    ),
                ];
                if family % 3 == 0 && i % 4 == 3 {
                    r.push((
                        "crm".into(),
                        key,
                        "device_id".into(),
                        format!("d{}", family + 1),
                    ));
                } else if family % 3 == 1 && i.is_multiple_of(4) {
                    r.push(("crm".into(), key, "device_id".into(), format!("d{family}")));
                }
                r
            })
            .collect();
        let refs: Vec<Row4> = rows
            .iter()
            .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
            .collect();
        let run = |threads: usize| {
            let mut chunks = Vec::new();
            for part in refs.chunks(refs.len() / 3 + 1) {
                let mut c = Chunk::default();
                c.ingest(&edges(part)).expect("ingest");
                chunks.push(c);
            }
            let mut g =
                build(Rules::default(), chunks, &Records::default(), threads).expect("build");
            let linked = g.link();
            let mut groups: std::collections::BTreeMap<u32, BTreeSet<String>> = Default::default();
            for o in 0..g.node_count() as u32 {
                if g.is_record(o) {
                    groups
                        .entry(linked.roots[o as usize])
                        .or_default()
                        .insert(g.occ_key.get(o).to_string());
                }
            }
            let refused: BTreeSet<String> = linked
                .refusals
                .iter()
                .map(|r| g.values.get(r.ident).to_string())
                .collect();
            (groups.into_values().collect::<BTreeSet<_>>(), refused)
        };
        let (one, refused) = run(1);
        // A family with two customer ids splits in two (its email refused); a device id
        // would join two families, so two customer ids: refused too.
        assert_eq!(one.len(), 9_000 + 2 * 9_000);
        assert_eq!(refused.len(), 9_000 + 6_000);
        assert!(refused.contains("f1@x.com") && !refused.contains("f0@x.com"));
        assert!(refused.contains("d1") && refused.contains("d4"));
        assert_eq!(run(2), (one, refused));
    }

    /// `batch` with its text columns as string views (as Parquet is read).
    fn as_views(batch: &RecordBatch) -> RecordBatch {
        use datafusion::arrow::compute::cast;
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let columns = batch
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8View).expect("cast"))
            .collect();
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8View, f.is_nullable()))
            .collect();
        RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns).expect("batch")
    }

    /// A record's hash (kept in the state from run to run) is the same whether its
    /// source and key come as text or as string views, short or long.
    #[test]
    fn record_hashes_are_the_same_from_text_and_from_views() {
        let rows: [Row; 6] = [
            ("crm", "1", "email", "a@x.com"),
            ("shop", "ORD12", "email", "a@x.com"),
            ("a", "bbbbbbbbbbbb", "email", "a@x.com"),
            ("support", "TICKET-00001", "email", "a@x.com"),
            ("web", "w-99", "email", "a@x.com"),
            ("é", "ü€", "email", "a@x.com"),
        ];
        let hashes = |batch: RecordBatch| {
            let mut c = Chunk::default();
            c.ingest(&batch).expect("ingest");
            c.occ_hash
        };
        let text = hashes(edges(&rows));
        assert_eq!(text.len(), rows.len());
        assert_eq!(hashes(as_views(&edges(&rows))), text);
    }

    #[test]
    fn more_than_32768_types_is_an_error() {
        let types: Vec<String> = (0..=32768).map(|i| format!("t{i}")).collect();
        let rows: Vec<Row4> = types
            .iter()
            .map(|t| ("crm", "1", t.as_str(), "v"))
            .collect();
        let mut c = Chunk::default();
        let e = c.ingest(&edges(&rows)).expect_err("too many types");
        assert!(e.to_string().contains("more than 32,768"), "{e}");
    }

    #[test]
    fn every_value_reaches_its_identifier_with_its_records() {
        // Values of every length up to a few hundred bytes, many to a partition, read
        // in several batches.
        let long = "L".repeat(300);
        let rows: Vec<(String, String, String, String)> = (0..6000)
            .flat_map(|i| {
                let key = format!("r{i}");
                [
                    (
                        "crm".into(),
                        key.clone(),
                        "email".into(),
                        format!("u{}@x.com", i % 1500),
                    ),
                    (
                        "crm".into(),
                        key.clone(),
                        "device_id".into(),
                        format!("{long}{}", i % 7),
                    ),
                    (
                        "crm".into(),
                        key,
                        "note".into(),
                        format!("n{}", "é".repeat(i % 90)),
                    ),
                ]
            })
            .collect();
        let refs: Vec<Row4> = rows
            .iter()
            .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
            .collect();
        // Three chunks of six batches, text and string views in turn.
        let chunks = refs
            .chunks(6000)
            .map(|rows| {
                let mut chunk = Chunk::default();
                for (k, part) in rows.chunks(1000).enumerate() {
                    let batch = edges(part);
                    let batch = if k % 2 == 0 { batch } else { as_views(&batch) };
                    chunk.ingest(&batch).expect("ingest");
                }
                chunk
            })
            .collect();
        let g = build(Rules::default(), chunks, &Records::default(), 2).expect("build");
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        for i in 0..g.identifier_count() {
            let records = (g.starts[i + 1] - g.starts[i]) as usize;
            assert!(seen
                .insert(g.values.get(i as u32).to_string(), records)
                .is_none());
        }
        assert_eq!(seen.len(), 1500 + 7 + 90);
        assert_eq!(seen["u0@x.com"], 4);
        assert_eq!(seen[&format!("{long}3")], 6000 / 7);
        assert_eq!(seen[&format!("n{}", "é".repeat(89))], 6000 / 90);
    }

    #[test]
    fn an_overlong_value_is_an_error_naming_the_record() {
        let long = "x".repeat(70_000);
        let mut c = Chunk::default();
        let e = c
            .ingest(&edges(&[("crm", "7", "email", long.as_str())]))
            .expect_err("too long")
            .to_string();
        assert!(
            e.contains("70000 bytes") && e.contains("record_key 7"),
            "{e}"
        );
    }
}
