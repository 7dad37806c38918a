//! One run of `resolve_identities`: link the graph, keep every existing person's id,
//! mint ids for new people, and produce the output rows and the space's next state.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::hash_utils::create_hashes;
use datafusion::common::{exec_err, Result};
use datafusion::physical_plan::repartition::REPARTITION_RANDOM_STATE;
use tracing::info;

use super::graph::{filled, joined, pair_hash, Graph, NO_ID};
use super::state::{
    encode_id, encode_id_bytes, id_hex, id_number, MergeRow, Meta, Records, RefusalRow, SpaceState,
};

/// The output schema of `resolve_identities`.
pub fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("record_key", DataType::Utf8, false),
        Field::new("unified_id", DataType::Utf8, false),
    ]))
}

/// The index of `unified_id` in [`output_schema`].
pub const UNIFIED_ID: usize = 2;

/// Output rows per batch.
const BATCH_ROWS: usize = 8192;

/// Link `graph`, assign ids starting from `meta` (the previous run's, or a fresh one),
/// and return the output rows (to be built) and the next state (merges appended to
/// `previous_merges`).
pub fn finish(
    mut graph: Graph,
    mut meta: Meta,
    previous_merges: Vec<MergeRow>,
    now_micros: i64,
) -> Result<(Output, SpaceState)> {
    let mut linked = graph.link();
    let n = graph.node_count();
    let seen: Vec<u32> = (0..n as u32).filter(|r| graph.is_record(*r)).collect();
    let root_of: Vec<u32> = seen.iter().map(|r| linked.roots[*r as usize]).collect();

    // Each component claims the oldest id among its records. Two components claiming
    // one id means a previous profile split: the part holding most of the records that
    // carried the id keeps it.
    let mut conflicted: HashSet<u32> = HashSet::new();
    // Without previous ids (a space's first run) there is nothing to claim.
    let claiming = graph.prev.iter().any(|p| *p != NO_ID);
    // The claimant of each previous id, by sequence number: every previous id is below
    // the space's next one, so an array (4 bytes per id ever given) serves as the map.
    let mut claims: Vec<u32> = vec![u32::MAX; if claiming { meta.next_seq as usize } else { 0 }];
    // Every component's root is its smallest node, a record (see `Graph::link`), so a
    // record is the first of its component in output order exactly when it is the root.
    let firsts = || {
        (0..seen.len())
            .filter(|i| seen[*i] == root_of[*i])
            .map(|i| seen[i])
    };
    for root in firsts().filter(|_| claiming) {
        let claim = linked.prev[root as usize];
        if claim == NO_ID {
            continue;
        }
        let Some(slot) = usize::try_from(claim).ok().and_then(|c| claims.get_mut(c)) else {
            // Only a damaged state holds an id at or past its next one.
            return exec_err!(
                "resolve_identities: the saved state of space {} holds id {claim} beyond its next id {}",
                meta.space,
                meta.next_seq
            );
        };
        match *slot {
            u32::MAX => *slot = root,
            other if other != root => {
                conflicted.insert(root);
                conflicted.insert(other);
            }
            _ => {}
        }
    }
    drop(claims);
    let mut assigned: HashMap<u32, u64> = HashMap::new();
    if !conflicted.is_empty() {
        // Ties go to the part holding the smallest record hash: which node is a root
        // depends on the input order, the records' hashes do not.
        let mut counts: HashMap<(u64, u32), u64> = HashMap::new();
        let mut smallest: HashMap<u32, u128> = HashMap::new();
        for (i, &r) in seen.iter().enumerate() {
            let root = root_of[i];
            if !conflicted.contains(&root) {
                continue;
            }
            let h = smallest.entry(root).or_insert(u128::MAX);
            *h = (*h).min(graph.occ_hash[r as usize]);
            let prev = graph.prev[r as usize];
            if prev != NO_ID {
                *counts.entry((prev, root)).or_default() += 1;
            }
        }
        let mut candidates: Vec<(u64, std::cmp::Reverse<u64>, u128, u32)> = counts
            .into_iter()
            .map(|((seq, root), c)| (seq, std::cmp::Reverse(c), smallest[&root], root))
            .collect();
        candidates.sort_unstable();
        // The ids claimed without conflict stay where they are: a losing part falls
        // back to another of its ids only if no other profile keeps that one.
        let mut used: HashSet<u64> = firsts()
            .filter(|root| !conflicted.contains(root))
            .map(|root| linked.prev[root as usize])
            .filter(|claim| *claim != NO_ID)
            .collect();
        for (seq, _, _, root) in candidates {
            if !used.contains(&seq) && !assigned.contains_key(&root) {
                used.insert(seq);
                assigned.insert(root, seq);
            }
        }
        info!(
            components = conflicted.len(),
            "identity: previous profiles split; the larger part keeps the id"
        );
    }

    // A component takes its id where its first record is met. Its root's oldest
    // previous id, not read after this loop, makes way for the id.
    let mut next_seq = meta.next_seq;
    let mut profiles = 0u64;
    let roots: Vec<u32> = firsts().collect();
    for root in roots {
        let claim = linked.prev[root as usize];
        let seq = if !conflicted.is_empty() && conflicted.contains(&root) {
            assigned.get(&root).copied()
        } else {
            (claim != NO_ID).then_some(claim)
        }
        .unwrap_or_else(|| {
            next_seq += 1;
            next_seq - 1
        });
        linked.prev[root as usize] = seq;
        profiles += 1;
    }
    let seq_of_root = &linked.prev;
    let hash = |r: &u32| graph.occ_hash[*r as usize];
    let (hash_hi, hash_lo, seqs) = std::thread::scope(|scope| {
        let hi = scope.spawn(|| seen.iter().map(|r| (hash(r) >> 64) as u64).collect());
        let lo = scope.spawn(|| seen.iter().map(|r| hash(r) as u64).collect());
        let seqs = gather(&root_of, seq_of_root, graph.threads);
        (joined(hi), joined(lo), seqs)
    });
    // Every record's root was given an id above (see `firsts`).
    if seqs.contains(&NO_ID) {
        return exec_err!("resolve_identities: internal error: a profile was given no id");
    }
    let records = Records::new(hash_hi, hash_lo, seqs);

    let mut merges = previous_merges;
    let type_name =
        |ident: u32| graph.types.names[graph.ident_type[ident as usize] as usize].clone();
    for m in &linked.merges {
        merges.push(MergeRow {
            merged_id: encode_id(m.merged, meta.salt),
            surviving_id: encode_id(m.surviving, meta.salt),
            merged_at_micros: now_micros,
            id_type: type_name(m.ident),
            id_value: graph.values.get(m.ident).to_string(),
        });
    }
    let mut buf = Vec::new();
    let mut refusals = Vec::new();
    for &(ident, count) in &linked.blocked {
        let (t, v) = (type_name(ident), graph.values.get(ident).to_string());
        refusals.push(RefusalRow {
            hash: pair_hash(&mut buf, &t, &v),
            id_type: t,
            id_value: v,
            reason: "blocked value: never links records".into(),
            records: u64::from(count),
            refused_at_micros: now_micros,
        });
    }
    for r in &linked.refusals {
        let (t, v) = (type_name(r.ident), graph.values.get(r.ident).to_string());
        refusals.push(RefusalRow {
            hash: pair_hash(&mut buf, &t, &v),
            id_type: t,
            id_value: v,
            reason: format!(
                "linking would give one profile {} {} values (limit {}); {} link(s) not made",
                r.values, graph.types.names[r.over_type as usize], r.limit, r.links
            ),
            records: u64::from(r.records),
            refused_at_micros: now_micros,
        });
    }

    meta.next_seq = next_seq;
    meta.run_at_micros = now_micros;
    meta.records = seen.len() as u64;
    meta.identifiers = graph.identifier_count() as u64;
    meta.profiles = profiles;
    let output = Output {
        seqs: records.seqs().clone(),
        salt: meta.salt,
        graph,
        seen,
    };
    Ok((
        output,
        SpaceState {
            meta,
            records,
            merges,
            refusals,
        },
    ))
}

/// `table[i]` for every `i` of `at`, on `threads` threads (a gather at random).
fn gather(at: &[u32], table: &[u64], threads: usize) -> Vec<u64> {
    let mut out = vec![0u64; at.len()];
    let per_thread = at.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for (out, at) in out.chunks_mut(per_thread).zip(at.chunks(per_thread)) {
            scope.spawn(move || {
                for (slot, i) in out.iter_mut().zip(at) {
                    *slot = table[*i as usize];
                }
            });
        }
    });
    out
}

/// The rows of a run, made from its graph once every record's id is known, so the
/// state can be saved while they are built.
pub struct Output {
    graph: Graph,
    /// The canonical occurrence of every output record, in output order.
    seen: Vec<u32>,
    /// The records' sequence numbers, in output order.
    seqs: ScalarBuffer<u64>,
    salt: u64,
}

/// How [`Output::partitions`] lays the rows out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One partition, the records in input order.
    Input,
    /// `unified_id` alone (a query reading no other column), in this many partitions: a
    /// profile's rows in the partition DataFusion's hash repartitioning on `unified_id`
    /// sends them to, each partition in `unified_id` order. Grouping, counting, ordering
    /// or joining by `unified_id` then needs no repartitioning and no sort. A row is its
    /// profile's id, repeated once per record: no record is looked up.
    Clustered(usize),
}

impl Output {
    /// The rows, per partition in batches of at most [`BATCH_ROWS`] (one empty batch for
    /// a partition without rows), built on `threads` threads, with `columns` of
    /// [`output_schema`] only, in that order.
    pub fn partitions(
        &self,
        threads: usize,
        columns: &[usize],
        layout: Layout,
    ) -> Result<Vec<Vec<RecordBatch>>> {
        match layout {
            Layout::Input => Ok(vec![self.batches(threads, columns)?]),
            Layout::Clustered(parts) if columns == [UNIFIED_ID] => {
                clustered_ids(&self.seqs, self.salt, parts.max(1), threads)
            }
            Layout::Clustered(_) => {
                exec_err!("resolve_identities: internal error: only unified_id is clustered")
            }
        }
    }

    /// The rows in input order.
    fn batches(&self, threads: usize, columns: &[usize]) -> Result<Vec<RecordBatch>> {
        let schema = Arc::new(output_schema().project(columns)?);
        let n = self.seen.len();
        if n == 0 {
            return Ok(vec![RecordBatch::new_empty(schema)]);
        }
        let rows = |b: usize| b * BATCH_ROWS..((b + 1) * BATCH_ROWS).min(n);
        let mut batches: Vec<usize> = (0..n.div_ceil(BATCH_ROWS)).collect();
        on_chunks(&mut batches, threads, |mine| {
            mine.iter()
                .map(|b| self.batch(rows(*b), &schema, columns))
                .collect()
        })
    }

    fn batch(
        &self,
        rows: Range<usize>,
        schema: &SchemaRef,
        columns: &[usize],
    ) -> Result<RecordBatch> {
        let g = &self.graph;
        let n = rows.len();
        let arrays = columns
            .iter()
            .map(|c| {
                let mut out = TextColumn::new(n, n * [8, 12, 16][*c]);
                let records = || self.seen[rows.clone()].iter().map(|r| *r as usize);
                match c {
                    0 => records().for_each(|r| {
                        out.push(g.sources.names[g.occ_source[r] as usize].as_bytes())
                    }),
                    1 => records().for_each(|r| out.push(g.occ_key.bytes(r as u32))),
                    _ => self.seqs[rows.clone()]
                        .iter()
                        .for_each(|seq| out.push(&encode_id_bytes(*seq, self.salt))),
                }
                out.finish()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }
}

/// The `unified_id` column of records whose ids are `seqs`, laid out as
/// [`Layout::Clustered`] says, in `parts` partitions.
fn clustered_ids(
    seqs: &[u64],
    salt: u64,
    parts: usize,
    threads: usize,
) -> Result<Vec<Vec<RecordBatch>>> {
    // Records per id. Ids are dense: all are below the space's next one.
    let top = seqs.iter().max().map_or(0, |m| *m as usize + 1);
    let mut records = filled(top, 0u32);
    for &seq in seqs {
        records[seq as usize] += 1;
    }
    // Each profile's id number (its text's order) and records, and its partition by
    // DataFusion's hash of the text, on every core.
    let mut profiles: Vec<(u64, u32)> = records
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(seq, n)| (id_number(seq as u64, salt), *n))
        .collect();
    drop(records);
    let part_of = on_chunks(&mut profiles, threads, |mine| partitions_of(mine, parts))?;
    let mut by_part: Vec<Vec<(u64, u32)>> = vec![Vec::new(); parts];
    for (profile, p) in profiles.iter().zip(&part_of) {
        by_part[*p as usize].push(*profile);
    }
    drop((profiles, part_of));
    // Each partition in id order (the numbers are distinct and sort as the texts do),
    // then its rows: each profile's id once per record.
    let schema = Arc::new(output_schema().project(&[UNIFIED_ID])?);
    on_chunks(&mut by_part, threads, |mine| {
        mine.iter_mut()
            .map(|profiles| {
                profiles.sort_unstable_by_key(|(x, _)| *x);
                id_batches(profiles, &schema)
            })
            .collect()
    })
}

/// `work` over `items` cut into at most `threads` runs, each on its own thread; the
/// results in order.
fn on_chunks<I: Send, T: Send>(
    items: &mut [I],
    threads: usize,
    work: impl Fn(&mut [I]) -> Result<Vec<T>> + Sync,
) -> Result<Vec<T>> {
    let per_thread = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .chunks_mut(per_thread)
            .map(|mine| scope.spawn(move || work(mine)))
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(joined(h)?);
        }
        Ok(all)
    })
}

/// Batches of [`BATCH_ROWS`] rows repeating each profile's id (by its number) once per
/// record, in order; one empty batch if there are none.
fn id_batches(profiles: &[(u64, u32)], schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    let mut out = TextColumn::new(BATCH_ROWS, BATCH_ROWS * 16);
    for (x, n) in profiles {
        let id = id_hex(*x);
        for _ in 0..*n {
            out.push(&id);
            if out.len() == BATCH_ROWS {
                let full =
                    std::mem::replace(&mut out, TextColumn::new(BATCH_ROWS, BATCH_ROWS * 16));
                batches.push(RecordBatch::try_new(schema.clone(), vec![full.finish()?])?);
            }
        }
    }
    if out.len() > 0 || batches.is_empty() {
        batches.push(RecordBatch::try_new(schema.clone(), vec![out.finish()?])?);
    }
    Ok(batches)
}

/// The partition among `parts` of each profile (by its id's number), as DataFusion's
/// hash repartitioning computes it from the id's text.
fn partitions_of(profiles: &[(u64, u32)], parts: usize) -> Result<Vec<u32>> {
    let mut out = Vec::with_capacity(profiles.len());
    let mut hashes = Vec::new();
    for block in profiles.chunks(BATCH_ROWS) {
        let mut text = TextColumn::new(block.len(), block.len() * 16);
        block.iter().for_each(|(x, _)| text.push(&id_hex(*x)));
        hashes.clear();
        hashes.resize(block.len(), 0);
        create_hashes(
            [text.finish()?],
            REPARTITION_RANDOM_STATE.random_state(),
            &mut hashes,
        )?;
        out.extend(hashes.iter().map(|h| (h % parts as u64) as u32));
    }
    Ok(out)
}

/// A text column written as its offsets and bytes (validated once, in [`Self::finish`]).
struct TextColumn {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
}

impl TextColumn {
    fn new(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        TextColumn {
            offsets,
            bytes: Vec::with_capacity(bytes),
        }
    }

    /// The values pushed.
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn push(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
        // A batch holds at most BATCH_ROWS values of at most 64 KiB each.
        self.offsets.push(self.bytes.len() as i32);
    }

    fn finish(self) -> Result<ArrayRef> {
        Ok(Arc::new(StringArray::try_new(
            OffsetBuffer::new(self.offsets.into()),
            self.bytes.into(),
            None,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::graph::tests_support::edges;
    use crate::identity::ingest::graph_of;
    use crate::identity::rules::Rules;
    use datafusion::arrow::array::AsArray;

    fn run(
        prev: Option<&SpaceState>,
        rows: &[(&str, &str, &str, &str)],
    ) -> (HashMap<String, String>, SpaceState) {
        let meta = prev.map(|p| p.meta.clone()).unwrap_or(Meta {
            salt: 99,
            ..Default::default()
        });
        let previous = prev.map(|p| p.records.clone()).unwrap_or_default();
        let g = graph_of(Rules::default(), &[edges(rows)], &previous).expect("ok");
        let merges = prev.map(|p| p.merges.clone()).unwrap_or_default();
        let (output, state) = finish(g, meta, merges, 1).expect("ok");
        let batches = output
            .partitions(2, &[0, 1, 2], Layout::Input)
            .expect("ok")
            .concat();
        let mut out = HashMap::new();
        for b in batches {
            for i in 0..b.num_rows() {
                let col = |c: usize| b.column(c).as_string::<i32>().value(i).to_string();
                out.insert(format!("{}:{}", col(0), col(1)), col(2));
            }
        }
        (out, state)
    }

    /// Clustered ids: each row where DataFusion's own hash repartitioning on
    /// `unified_id` sends it, each partition in id order, and every record's id once.
    #[test]
    fn clustered_ids_are_where_datafusion_puts_them_in_id_order() {
        use datafusion::physical_plan::expressions::col;
        use datafusion::physical_plan::metrics::Time;
        use datafusion::physical_plan::repartition::BatchPartitioner;
        use datafusion::physical_plan::Partitioning;

        // 400 records, three to a profile, the profiles' records apart in the input.
        let rows: Vec<[String; 4]> = (0..400)
            .map(|i| {
                let key = format!("k{i}");
                let email = format!("p{}@x.com", i % 134);
                ["crm".into(), key, "email".into(), email]
            })
            .collect();
        let refs: Vec<_> = rows
            .iter()
            .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str(), r[3].as_str()))
            .collect();
        let g = graph_of(Rules::default(), &[edges(&refs)], &Records::default()).expect("ok");
        let meta = Meta {
            salt: 7,
            ..Default::default()
        };
        let (output, state) = finish(g, meta, Vec::new(), 1).expect("ok");
        assert_eq!(state.meta.profiles, 134);
        let ids = |batches: &[RecordBatch]| -> Vec<String> {
            batches
                .iter()
                .flat_map(|b| {
                    let c = b.column(0).as_string::<i32>();
                    (0..b.num_rows()).map(move |i| c.value(i).to_string())
                })
                .collect()
        };
        let mut expected = ids(&output
            .partitions(2, &[UNIFIED_ID], Layout::Input)
            .expect("ok")
            .concat());
        expected.sort();
        assert_eq!(expected.len(), 400);
        for parts in [1, 2, 3] {
            let clustered = output
                .partitions(2, &[UNIFIED_ID], Layout::Clustered(parts))
                .expect("ok");
            assert_eq!(clustered.len(), parts);
            let mut all = Vec::new();
            for (p, batches) in clustered.iter().enumerate() {
                let schema = batches[0].schema();
                let hash =
                    Partitioning::Hash(vec![col("unified_id", &schema).expect("col")], parts);
                let mut partitioner =
                    BatchPartitioner::try_new(hash, Time::new(), 0, 1).expect("partitioner");
                for b in batches {
                    partitioner
                        .partition(b.clone(), |to, part| {
                            assert!(to == p || part.num_rows() == 0, "rows of {p} sent to {to}");
                            Ok(())
                        })
                        .expect("partition");
                }
                let mine = ids(batches);
                assert!(mine.is_sorted(), "partition {p} in id order");
                all.extend(mine);
            }
            all.sort();
            assert_eq!(all, expected);
        }
        // Another column with the clustered layout is refused, not given in input order.
        assert!(output
            .partitions(2, &[0, UNIFIED_ID], Layout::Clustered(2))
            .is_err());
    }

    #[test]
    fn a_state_with_an_id_past_its_next_one_is_an_error() {
        let rows = [("crm", "1", "email", "a@x.com")];
        let (_, mut state) = run(None, &rows);
        state.meta.next_seq = 0;
        let g = graph_of(Rules::default(), &[edges(&rows)], &state.records).expect("ok");
        let e = finish(g, state.meta.clone(), Vec::new(), 1)
            .err()
            .expect("damaged state")
            .to_string();
        assert!(e.contains("beyond its next id 0"), "{e}");
    }

    #[test]
    fn ids_are_stable_and_the_older_id_survives_a_merge() {
        let (first, s1) = run(
            None,
            &[
                ("crm", "1", "email", "a@x.com"),
                ("crm", "2", "email", "b@x.com"),
            ],
        );
        assert_eq!(first.len(), 2);
        assert_ne!(first["crm:1"], first["crm:2"]);
        // New data: a third person, and an order that carries both emails.
        let (second, s2) = run(
            Some(&s1),
            &[
                ("crm", "1", "email", "a@x.com"),
                ("crm", "2", "email", "b@x.com"),
                ("crm", "3", "email", "c@x.com"),
                ("shop", "o1", "email", "a@x.com"),
                ("shop", "o1", "email", "b@x.com"),
            ],
        );
        let survivor = [&first["crm:1"], &first["crm:2"]]
            .into_iter()
            .min_by_key(|id| crate::identity::state::decode_id(id, 99))
            .expect("ok")
            .clone();
        assert_eq!(second["crm:1"], survivor);
        assert_eq!(second["crm:2"], survivor);
        assert_eq!(second["shop:o1"], survivor);
        assert_ne!(second["crm:3"], survivor);
        assert!(!first.values().any(|v| *v == second["crm:3"]));
        assert_eq!(s2.merges.len(), 1);
        assert_eq!(s2.merges[0].surviving_id, survivor);
        assert_eq!(s2.merges[0].id_type, "email");
        // Running again on the same data changes nothing.
        let (third, s3) = run(
            Some(&s2),
            &[
                ("crm", "1", "email", "a@x.com"),
                ("crm", "2", "email", "b@x.com"),
                ("crm", "3", "email", "c@x.com"),
                ("shop", "o1", "email", "a@x.com"),
                ("shop", "o1", "email", "b@x.com"),
            ],
        );
        assert_eq!(third, second);
        assert_eq!(s3.merges.len(), 1);
        assert_eq!(s3.meta.profiles, 2);
    }

    #[test]
    fn a_split_keeps_the_id_on_the_larger_part() {
        let (first, s1) = run(
            None,
            &[
                ("crm", "1", "email", "a@x.com"),
                ("crm", "2", "email", "a@x.com"),
                ("crm", "2", "phone", "+4915100000001"),
                ("crm", "3", "phone", "+4915100000001"),
                ("crm", "4", "phone", "+4915100000001"),
            ],
        );
        let id = first["crm:1"].clone();
        assert!(first.values().all(|v| *v == id));
        // crm:2 is gone: {1} and {3, 4} fall apart.
        let (second, _) = run(
            Some(&s1),
            &[
                ("crm", "1", "email", "a@x.com"),
                ("crm", "3", "phone", "+4915100000001"),
                ("crm", "4", "phone", "+4915100000001"),
            ],
        );
        assert_eq!(second["crm:3"], id);
        assert_eq!(second["crm:4"], id);
        assert_ne!(second["crm:1"], id);
    }

    /// A losing part of a split falls back to another of its previous ids only if no
    /// other profile keeps that one.
    #[test]
    fn a_split_never_gives_an_id_kept_elsewhere() {
        let (first, s1) = run(
            None,
            &[
                ("crm", "1", "email", "a@x.com"),
                ("crm", "2", "email", "a@x.com"),
                ("crm", "3", "email", "a@x.com"),
                ("crm", "4", "email", "b@x.com"),
                ("crm", "5", "email", "b@x.com"),
            ],
        );
        assert_eq!(first["crm:1"], first["crm:3"]);
        assert_eq!(first["crm:4"], first["crm:5"]);
        // crm:1 leaves its profile for crm:4's; crm:2 and 3 keep theirs, crm:5 alone
        // keeps b@x.com. The part {1, 4} holds both old ids, claims the older one and
        // loses it to the larger part {2, 3}; the newer one is crm:5's.
        let (second, _) = run(
            Some(&s1),
            &[
                ("crm", "1", "phone", "+4915100000001"),
                ("crm", "4", "phone", "+4915100000001"),
                ("crm", "2", "email", "c@x.com"),
                ("crm", "3", "email", "c@x.com"),
                ("crm", "5", "email", "b@x.com"),
            ],
        );
        assert_eq!(second["crm:2"], first["crm:1"]);
        assert_eq!(second["crm:5"], first["crm:4"]);
        assert_eq!(second["crm:1"], second["crm:4"]);
        assert_ne!(second["crm:1"], second["crm:2"]);
        assert_ne!(second["crm:1"], second["crm:5"]);
    }

    #[test]
    fn refusals_and_blocked_values_are_reported() {
        let (_, s) = run(
            None,
            &[
                ("crm", "1", "customer_id", "C1"),
                ("crm", "1", "email", "family@x.com"),
                ("crm", "2", "customer_id", "C2"),
                ("crm", "2", "email", "family@x.com"),
                ("crm", "1", "phone", "0000000000"),
                ("crm", "2", "phone", "0000000000"),
            ],
        );
        assert_eq!(s.refusals.len(), 2, "{:?}", s.refusals);
        let family = s
            .refusals
            .iter()
            .find(|r| r.id_value == "family@x.com")
            .expect("ok");
        assert!(
            family.reason.contains("2 customer_id values (limit 1)"),
            "{}",
            family.reason
        );
        assert_eq!(family.records, 2);
        let zeros = s
            .refusals
            .iter()
            .find(|r| r.id_value == "0000000000")
            .expect("ok");
        assert!(zeros.reason.starts_with("blocked"));
    }
}
