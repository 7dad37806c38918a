//! The group accumulator of `most_frequent` and `collect_distinct`: how many times each
//! group saw each value, for every group at once.
//!
//! Values are interned: each distinct value gets a dense `u32` id, held once as its
//! order-preserving code or its bytes (see `codes`). One hash map then counts the
//! `(group, id)` pairs, so a row costs two hash lookups and nothing is allocated per group
//! or per row, only per distinct value. Emitting groups walks the pairs once: the most
//! frequent value of each group directly, the lists of values after bucketing the pairs by
//! group. The partial state is, per group, the list of its values and (for
//! `most_frequent`) the list of their counts, the same state as the accumulators of one
//! group in `most_frequent` and `collect_distinct`.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::filter;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::common::{exec_err, internal_err, HashMap, Result};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use super::codes::{bytes_to_array, code_of, ByteValues, Code, FixedCode, Prefer};

/// What the accumulator returns per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// The value with the highest count, the smallest on a tie; the state has counts.
    MostFrequent,
    /// The sorted list of values; the state is the list.
    CollectDistinct,
}

/// Whether values of `data_type` can be counted by the group accumulator.
pub(crate) fn counts_supported(data_type: &DataType) -> bool {
    code_of(data_type) != Code::None
}

pub(crate) fn new_accumulator(
    data_type: &DataType,
    output: Output,
) -> Result<Box<dyn GroupsAccumulator>> {
    Ok(match code_of(data_type) {
        Code::I64 => Box::new(CountGroups::new(
            output,
            FixedInterner::<i64>::new(data_type),
        )),
        Code::I128 => Box::new(CountGroups::new(
            output,
            FixedInterner::<i128>::new(data_type),
        )),
        Code::Bytes => Box::new(CountGroups::new(output, ByteInterner::new(data_type))),
        Code::None => return internal_err!("no group accumulator counts {data_type} values"),
    })
}

/// Distinct values, each with a dense id.
trait Interner: Send + 'static {
    /// One batch of input values, ready for per-row access.
    type Input<'a>;

    fn input<'a>(&self, array: &'a ArrayRef) -> Result<Self::Input<'a>>;

    /// The id of the value at `row` of `input`, new if the value is.
    fn intern(&mut self, input: &Self::Input<'_>, row: usize) -> Result<u32>;

    /// The order of two values by id: `ORDER BY`'s.
    fn cmp(&self, a: u32, b: u32) -> Ordering;

    /// An array of the values of `ids`, `None` for NULL.
    fn to_array(&self, ids: &[Option<u32>]) -> Result<ArrayRef>;

    /// Forget every value.
    fn clear(&mut self);

    fn size(&self) -> usize;
}

fn next_id(len: usize) -> Result<u32> {
    match u32::try_from(len) {
        Ok(id) => Ok(id),
        Err(_) => exec_err!("more than {} distinct values in one aggregation", u32::MAX),
    }
}

/// Values held as their codes (in natural order: `Prefer::Greatest`).
struct FixedInterner<C> {
    data_type: DataType,
    ids: HashMap<C, u32>,
    values: Vec<C>,
}

impl<C: FixedCode + std::hash::Hash> FixedInterner<C> {
    fn new(data_type: &DataType) -> Self {
        Self {
            data_type: data_type.clone(),
            ids: HashMap::default(),
            values: Vec::new(),
        }
    }
}

impl<C: FixedCode + std::hash::Hash> Interner for FixedInterner<C> {
    type Input<'a> = Vec<C>;

    fn input(&self, array: &ArrayRef) -> Result<Vec<C>> {
        C::encode(array.as_ref(), Prefer::Greatest)
    }

    #[inline]
    fn intern(&mut self, input: &Vec<C>, row: usize) -> Result<u32> {
        let code = input[row];
        if let Some(&id) = self.ids.get(&code) {
            return Ok(id);
        }
        let id = next_id(self.values.len())?;
        self.ids.insert(code, id);
        self.values.push(code);
        Ok(id)
    }

    fn cmp(&self, a: u32, b: u32) -> Ordering {
        self.values[a as usize].cmp(&self.values[b as usize])
    }

    fn to_array(&self, ids: &[Option<u32>]) -> Result<ArrayRef> {
        let codes = ids
            .iter()
            .map(|id| id.map_or_else(C::default, |i| self.values[i as usize]))
            .collect();
        let nulls = NullBuffer::from_iter(ids.iter().map(Option::is_some));
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        C::decode(codes, nulls, &self.data_type, Prefer::Greatest)
    }

    fn clear(&mut self) {
        self.ids = HashMap::default();
        self.values = Vec::new();
    }

    fn size(&self) -> usize {
        self.ids.capacity() * (size_of::<C>() + size_of::<u32>() + 1)
            + self.values.capacity() * size_of::<C>()
    }
}

/// Text or binary values; the map and the id list share each value's allocation.
struct ByteInterner {
    data_type: DataType,
    ids: HashMap<Arc<[u8]>, u32>,
    values: Vec<Arc<[u8]>>,
    /// Bytes of the values, kept up to date for `size`.
    heap: usize,
}

impl ByteInterner {
    fn new(data_type: &DataType) -> Self {
        Self {
            data_type: data_type.clone(),
            ids: HashMap::default(),
            values: Vec::new(),
            heap: 0,
        }
    }
}

impl Interner for ByteInterner {
    type Input<'a> = ByteValues<'a>;

    fn input<'a>(&self, array: &'a ArrayRef) -> Result<ByteValues<'a>> {
        ByteValues::try_new(array.as_ref())
    }

    #[inline]
    fn intern(&mut self, input: &ByteValues<'_>, row: usize) -> Result<u32> {
        let bytes = input.get(row);
        if let Some(&id) = self.ids.get(bytes) {
            return Ok(id);
        }
        let id = next_id(self.values.len())?;
        let value: Arc<[u8]> = Arc::from(bytes);
        self.heap += bytes.len() + 2 * size_of::<usize>();
        self.ids.insert(Arc::clone(&value), id);
        self.values.push(value);
        Ok(id)
    }

    fn cmp(&self, a: u32, b: u32) -> Ordering {
        self.values[a as usize].cmp(&self.values[b as usize])
    }

    fn to_array(&self, ids: &[Option<u32>]) -> Result<ArrayRef> {
        let values = ids.iter().map(|id| id.map(|i| &*self.values[i as usize]));
        bytes_to_array(&self.data_type, values)
    }

    fn clear(&mut self) {
        self.ids = HashMap::default();
        self.values = Vec::new();
        self.heap = 0;
    }

    fn size(&self) -> usize {
        self.ids.capacity() * (size_of::<Arc<[u8]>>() + size_of::<u32>() + 1)
            + self.values.capacity() * size_of::<Arc<[u8]>>()
            + self.heap
    }
}

/// Counts of `(group, value id)` pairs.
struct CountGroups<I> {
    output: Output,
    interner: I,
    counts: HashMap<(u32, u32), i64>,
    /// Number of groups, counted or not.
    groups: usize,
}

/// The pairs of the emitted groups: `(group, id, count)`.
type Entries = Vec<(u32, u32, i64)>;

fn group_id(group: usize) -> Result<u32> {
    match u32::try_from(group) {
        Ok(g) => Ok(g),
        Err(_) => exec_err!("more than {} groups in one aggregation", u32::MAX),
    }
}

/// The rows a FILTER clause keeps and that have a value.
fn counted_rows(values: &ArrayRef, opt_filter: Option<&BooleanArray>) -> Option<NullBuffer> {
    let mut kept = values.logical_nulls();
    if let Some(filter) = opt_filter {
        let selected = match filter.nulls() {
            Some(nulls) => filter.values() & nulls.inner(),
            None => filter.values().clone(),
        };
        kept = NullBuffer::union(kept.as_ref(), Some(&NullBuffer::new(selected)));
    }
    kept
}

impl<I: Interner> CountGroups<I> {
    fn new(output: Output, interner: I) -> Self {
        Self {
            output,
            interner,
            counts: HashMap::default(),
            groups: 0,
        }
    }

    fn add(&mut self, group: usize, id: u32, count: i64) -> Result<()> {
        *self.counts.entry((group_id(group)?, id)).or_insert(0) += count;
        Ok(())
    }

    /// Remove the groups `emit_to` names and return their pairs and number; the groups
    /// left are renumbered from 0.
    fn take(&mut self, emit_to: EmitTo) -> (Entries, usize) {
        match emit_to {
            EmitTo::All => {
                let entries = self.counts.drain().map(|((g, id), c)| (g, id, c)).collect();
                (entries, std::mem::take(&mut self.groups))
            }
            EmitTo::First(n) => {
                let n = n.min(self.groups);
                let mut entries = Vec::new();
                let mut kept = HashMap::with_capacity(self.counts.len());
                for ((g, id), c) in self.counts.drain() {
                    if (g as usize) < n {
                        entries.push((g, id, c));
                    } else {
                        // `g >= n`, so the difference fits.
                        kept.insert((g - n as u32, id), c);
                    }
                }
                self.counts = kept;
                self.groups -= n;
                (entries, n)
            }
        }
    }

    /// After emitting everything nothing refers to the interned values any more.
    fn forget_values_after(&mut self, emit_to: EmitTo) {
        if emit_to == EmitTo::All {
            self.interner.clear();
        }
    }

    /// The pairs grouped: list offsets per group, ids and counts in list order, values
    /// of a group sorted when `sorted`.
    fn lists(&self, mut entries: Entries, groups: usize, sorted: bool) -> (Vec<i32>, Entries) {
        let mut offsets = vec![0i32; groups + 1];
        for &(g, _, _) in &entries {
            offsets[g as usize + 1] += 1;
        }
        for i in 0..groups {
            offsets[i + 1] += offsets[i];
        }
        // Place the pairs group after group (a counting sort), then sort each group's
        // values if asked: the lists are short.
        let mut cursor: Vec<usize> = offsets[..groups].iter().map(|&o| o as usize).collect();
        let mut placed = vec![(0, 0, 0); entries.len()];
        for entry in entries.drain(..) {
            let slot = &mut cursor[entry.0 as usize];
            placed[*slot] = entry;
            *slot += 1;
        }
        let mut entries = placed;
        if sorted {
            for w in offsets.windows(2) {
                entries[w[0] as usize..w[1] as usize]
                    .sort_unstable_by(|a, b| self.interner.cmp(a.1, b.1));
            }
        }
        (offsets, entries)
    }

    fn list_array(
        &self,
        offsets: Vec<i32>,
        values: ArrayRef,
        nulls: Option<NullBuffer>,
    ) -> ArrayRef {
        let field = Arc::new(Field::new_list_field(values.data_type().clone(), true));
        Arc::new(ListArray::new(
            field,
            OffsetBuffer::new(offsets.into()),
            values,
            nulls,
        ))
    }

    /// Per emitted group, the most frequent value (the smallest on a tie).
    fn most_frequent(&self, entries: &Entries, groups: usize) -> Result<ArrayRef> {
        let mut best: Vec<Option<(i64, u32)>> = vec![None; groups];
        for &(g, id, count) in entries {
            let slot = &mut best[g as usize];
            let better = match *slot {
                None => true,
                Some((c, b)) => count > c || (count == c && self.interner.cmp(id, b).is_lt()),
            };
            if better {
                *slot = Some((count, id));
            }
        }
        let ids: Vec<Option<u32>> = best.iter().map(|b| b.map(|(_, id)| id)).collect();
        self.interner.to_array(&ids)
    }
}

impl<I: Interner> GroupsAccumulator for CountGroups<I> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let [array] = values else {
            return internal_err!("{:?}: {} columns, expected 1", self.output, values.len());
        };
        self.groups = self.groups.max(total_num_groups);
        let counted = counted_rows(array, opt_filter);
        let input = self.interner.input(array)?;
        for (row, &group) in group_indices.iter().enumerate() {
            if counted.as_ref().is_none_or(|c| c.is_valid(row)) {
                let id = self.interner.intern(&input, row)?;
                self.add(group, id, 1)?;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (entries, groups) = self.take(emit_to);
        let result = match self.output {
            Output::MostFrequent => self.most_frequent(&entries, groups),
            Output::CollectDistinct => {
                let (offsets, entries) = self.lists(entries, groups, true);
                let nulls = NullBuffer::from_iter(offsets.windows(2).map(|w| w[1] > w[0]));
                let nulls = (nulls.null_count() > 0).then_some(nulls);
                let ids: Vec<Option<u32>> = entries.iter().map(|&(_, id, _)| Some(id)).collect();
                let values = self.interner.to_array(&ids)?;
                Ok(self.list_array(offsets, values, nulls))
            }
        };
        self.forget_values_after(emit_to);
        result
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (entries, groups) = self.take(emit_to);
        let (offsets, entries) = self.lists(entries, groups, false);
        let ids: Vec<Option<u32>> = entries.iter().map(|&(_, id, _)| Some(id)).collect();
        let values = self.interner.to_array(&ids)?;
        let mut state = vec![self.list_array(offsets.clone(), values, None)];
        if self.output == Output::MostFrequent {
            let counts = Int64Array::from_iter_values(entries.iter().map(|&(_, _, c)| c));
            state.push(self.list_array(offsets, Arc::new(counts), None));
        }
        self.forget_values_after(emit_to);
        Ok(state)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let expected = if self.output == Output::MostFrequent {
            2
        } else {
            1
        };
        if values.len() != expected {
            return internal_err!("{:?}: {} state columns", self.output, values.len());
        }
        self.groups = self.groups.max(total_num_groups);
        let lists = values[0].as_list::<i32>();
        let counts = values.get(1).map(|c| c.as_list::<i32>());
        let items = lists.values();
        let item_nulls = items.logical_nulls();
        let input = self.interner.input(items)?;
        let count_items = counts.map(|c| c.values().as_primitive::<Int64Type>());
        for (row, &group) in group_indices.iter().enumerate() {
            if lists.is_null(row) {
                continue;
            }
            let (start, end) = (lists.value_offsets()[row], lists.value_offsets()[row + 1]);
            let count_start = match counts {
                Some(c) if c.value_length(row) != end - start => {
                    return exec_err!(
                        "most_frequent: a partial state has mismatched values and counts"
                    );
                }
                Some(c) => c.value_offsets()[row],
                None => 0,
            };
            for (k, item) in (start..end).enumerate() {
                let item = item as usize;
                if item_nulls.as_ref().is_some_and(|n| n.is_null(item)) {
                    continue;
                }
                let count = count_items.map_or(1, |c| c.value(count_start as usize + k));
                let id = self.interner.intern(&input, item)?;
                self.add(group, id, count)?;
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let [array] = values else {
            return internal_err!("{:?}: {} columns, expected 1", self.output, values.len());
        };
        // Each row becomes a list of its value, or an empty list when it does not count.
        let counted = counted_rows(array, opt_filter);
        let (items, lengths): (ArrayRef, Vec<usize>) = match &counted {
            None => (Arc::clone(array), vec![1; array.len()]),
            Some(kept) => {
                let mask = BooleanArray::new(kept.inner().clone(), None);
                (
                    filter(array.as_ref(), &mask)?,
                    kept.iter().map(usize::from).collect(),
                )
            }
        };
        let offsets = OffsetBuffer::<i32>::from_lengths(lengths);
        let field = Arc::new(Field::new_list_field(array.data_type().clone(), true));
        let mut state: Vec<ArrayRef> = vec![Arc::new(ListArray::new(
            Arc::clone(&field),
            offsets.clone(),
            Arc::clone(&items),
            None,
        ))];
        if self.output == Output::MostFrequent {
            let ones: ArrayRef = Arc::new(Int64Array::from(vec![1i64; items.len()]));
            let field = Arc::new(Field::new_list_field(DataType::Int64, true));
            state.push(Arc::new(ListArray::new(field, offsets, ones, None)));
        }
        Ok(state)
    }

    fn size(&self) -> usize {
        self.counts.capacity() * (size_of::<((u32, u32), i64)>() + 1) + self.interner.size()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};

    use super::*;

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn texts(array: &ArrayRef) -> Vec<Option<String>> {
        array
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()
    }

    #[test]
    fn partial_counts_merge_and_ties_go_to_the_smallest() -> Result<()> {
        // Group 0: "b" twice in p1, "a" twice across p1 and p2: a tie, "a" wins.
        // Group 1: only NULLs and a filtered row.
        let mut p1 = new_accumulator(&DataType::Utf8, Output::MostFrequent)?;
        p1.update_batch(
            &[strings(&[Some("b"), Some("a"), Some("b"), None, Some("z")])],
            &[0, 0, 0, 1, 1],
            Some(&BooleanArray::from(vec![true, true, true, true, false])),
            2,
        )?;
        let p2 = new_accumulator(&DataType::Utf8, Output::MostFrequent)?;
        let converted = p2.convert_to_state(&[strings(&[Some("a"), None])], None)?;
        let mut last = new_accumulator(&DataType::Utf8, Output::MostFrequent)?;
        last.merge_batch(&p1.state(EmitTo::All)?, &[0, 1], 2)?;
        last.merge_batch(&converted, &[0, 1], 2)?;
        let result = last.evaluate(EmitTo::All)?;
        assert_eq!(texts(&result), vec![Some("a".into()), None]);
        Ok(())
    }

    #[test]
    fn lists_are_sorted_and_emitted_in_parts() -> Result<()> {
        let mut acc = new_accumulator(&DataType::Int64, Output::CollectDistinct)?;
        let values: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(5),
            Some(-1),
            Some(5),
            None,
            Some(3),
            Some(7),
        ]));
        acc.update_batch(&[values], &[1, 1, 1, 0, 1, 2], None, 3)?;
        let first = acc.evaluate(EmitTo::First(2))?;
        let first = first.as_list::<i32>();
        assert!(first.is_null(0));
        let items = first.value(1);
        assert_eq!(
            items.as_primitive::<Int64Type>().values().to_vec(),
            vec![-1, 3, 5]
        );
        // Group 2 is now group 0.
        let rest = acc.state(EmitTo::All)?;
        let rest = rest[0].as_list::<i32>();
        assert_eq!(rest.len(), 1);
        assert_eq!(
            rest.value(0).as_primitive::<Int64Type>().values().to_vec(),
            vec![7]
        );
        Ok(())
    }
}
