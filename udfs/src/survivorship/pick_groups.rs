//! The group accumulator of the pick functions (`latest`, `earliest`,
//! `first_by_priority`): the best row of every group at once, in flat vectors indexed by
//! group, for a `GROUP BY` with millions of groups.
//!
//! Ranking keys are held as `i64` codes (see `codes`) oriented so that a greater code is
//! a better row, `None` for a NULL key that ranks last; `[Option<i64>; N]` then compares
//! lexicographically just as the rule ranks. Values are held as codes too (`i64`, or
//! `i128` for `Decimal128`), or as bytes for text and binary, and are compared only to
//! settle a tie between keys. A row costs a few comparisons and, when it wins, a copy of
//! its value; nothing is allocated per row.

use std::cmp::Ordering;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer};
use datafusion::arrow::compute::nullif;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{internal_err, Result};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use super::codes::{bytes_to_array, code_of, ByteValues, Code, FixedCode, Prefer};
use super::pick::{NullKey, PickRule};

/// The group accumulator for `types` (`[value, key...]`), which must all have a code.
pub(crate) fn new_accumulator(
    types: &[DataType],
    rule: PickRule,
) -> Result<Box<dyn GroupsAccumulator>> {
    let Some((value_type, key_types)) = types.split_first() else {
        return internal_err!("a pick aggregate without arguments");
    };
    if key_types.len() != rule.keys.len() || key_types.iter().any(|k| code_of(k) != Code::I64) {
        return internal_err!("no group accumulator for keys of types {key_types:?}");
    }
    let (v, r, k) = (value_type, rule.value, key_types);
    Ok(match (code_of(value_type), key_types.len()) {
        (Code::I64, 1) => Box::new(PickGroups::<1, _>::new(
            rule,
            k,
            FixedValues::<i64>::new(v, r),
        )),
        (Code::I64, 2) => Box::new(PickGroups::<2, _>::new(
            rule,
            k,
            FixedValues::<i64>::new(v, r),
        )),
        (Code::I128, 1) => Box::new(PickGroups::<1, _>::new(
            rule,
            k,
            FixedValues::<i128>::new(v, r),
        )),
        (Code::I128, 2) => Box::new(PickGroups::<2, _>::new(
            rule,
            k,
            FixedValues::<i128>::new(v, r),
        )),
        (Code::Bytes, 1) => Box::new(PickGroups::<1, _>::new(rule, k, ByteStore::new(v, r))),
        (Code::Bytes, 2) => Box::new(PickGroups::<2, _>::new(rule, k, ByteStore::new(v, r))),
        _ => return internal_err!("no group accumulator for {types:?}"),
    })
}

/// The values of the groups' best rows.
trait ValueStore: Send + 'static {
    /// One batch of input values, ready for per-row access.
    type Input<'a>;

    fn input<'a>(&self, array: &'a ArrayRef) -> Result<Self::Input<'a>>;

    /// Make room for `groups` groups.
    fn resize(&mut self, groups: usize);

    /// How the value at `row` of `input` ranks against the one stored for `group`.
    fn rank(&self, input: &Self::Input<'_>, row: usize, group: usize) -> Ordering;

    fn store(&mut self, input: &Self::Input<'_>, row: usize, group: usize);

    /// The values of the groups `emit_to` names, removed; `nulls` marks the empty groups.
    fn take(&mut self, emit_to: EmitTo, nulls: Option<NullBuffer>) -> Result<ArrayRef>;

    fn size(&self) -> usize;
}

/// Values held as fixed-width codes, oriented so that greater is better.
struct FixedValues<C> {
    data_type: DataType,
    prefer: Prefer,
    codes: Vec<C>,
}

impl<C: FixedCode> FixedValues<C> {
    fn new(data_type: &DataType, prefer: Prefer) -> Self {
        Self {
            data_type: data_type.clone(),
            prefer,
            codes: Vec::new(),
        }
    }
}

impl<C: FixedCode> ValueStore for FixedValues<C> {
    type Input<'a> = Vec<C>;

    fn input(&self, array: &ArrayRef) -> Result<Vec<C>> {
        C::encode(array.as_ref(), self.prefer)
    }

    fn resize(&mut self, groups: usize) {
        self.codes.resize(groups, C::default());
    }

    #[inline]
    fn rank(&self, input: &Vec<C>, row: usize, group: usize) -> Ordering {
        input[row].cmp(&self.codes[group])
    }

    #[inline]
    fn store(&mut self, input: &Vec<C>, row: usize, group: usize) {
        self.codes[group] = input[row];
    }

    fn take(&mut self, emit_to: EmitTo, nulls: Option<NullBuffer>) -> Result<ArrayRef> {
        C::decode(
            emit_to.take_needed(&mut self.codes),
            nulls,
            &self.data_type,
            self.prefer,
        )
    }

    fn size(&self) -> usize {
        self.codes.capacity() * size_of::<C>()
    }
}

/// Text or binary values, one buffer per group reused when a better value replaces it.
struct ByteStore {
    data_type: DataType,
    prefer: Prefer,
    values: Vec<Vec<u8>>,
    /// Bytes allocated by the buffers in `values`, kept up to date for `size`.
    heap: usize,
}

impl ByteStore {
    fn new(data_type: &DataType, prefer: Prefer) -> Self {
        Self {
            data_type: data_type.clone(),
            prefer,
            values: Vec::new(),
            heap: 0,
        }
    }
}

impl ValueStore for ByteStore {
    type Input<'a> = ByteValues<'a>;

    fn input<'a>(&self, array: &'a ArrayRef) -> Result<ByteValues<'a>> {
        ByteValues::try_new(array.as_ref())
    }

    fn resize(&mut self, groups: usize) {
        self.values.resize_with(groups, Vec::new);
    }

    #[inline]
    fn rank(&self, input: &ByteValues<'_>, row: usize, group: usize) -> Ordering {
        let ordering = input.get(row).cmp(self.values[group].as_slice());
        match self.prefer {
            Prefer::Greatest => ordering,
            Prefer::Least => ordering.reverse(),
        }
    }

    #[inline]
    fn store(&mut self, input: &ByteValues<'_>, row: usize, group: usize) {
        let buffer = &mut self.values[group];
        let before = buffer.capacity();
        buffer.clear();
        buffer.extend_from_slice(input.get(row));
        self.heap += buffer.capacity() - before;
    }

    fn take(&mut self, emit_to: EmitTo, nulls: Option<NullBuffer>) -> Result<ArrayRef> {
        let taken = emit_to.take_needed(&mut self.values);
        self.heap -= taken.iter().map(Vec::capacity).sum::<usize>();
        let rows = taken.iter().enumerate().map(|(i, v)| {
            nulls
                .as_ref()
                .is_none_or(|n| n.is_valid(i))
                .then_some(v.as_slice())
        });
        bytes_to_array(&self.data_type, rows)
    }

    fn size(&self) -> usize {
        self.values.capacity() * size_of::<Vec<u8>>() + self.heap
    }
}

/// The ranking keys of a group's best row, `None` while the group has none.
type BestKeys<const N: usize> = Option<[Option<i64>; N]>;

/// The best row of every group: `N` ranking keys and the value.
struct PickGroups<const N: usize, V> {
    rule: PickRule,
    key_types: Vec<DataType>,
    /// Per group, the keys of its best row.
    best: Vec<BestKeys<N>>,
    values: V,
}

impl<const N: usize, V: ValueStore> PickGroups<N, V> {
    fn new(rule: PickRule, key_types: &[DataType], values: V) -> Self {
        Self {
            rule,
            key_types: key_types.to_vec(),
            best: Vec::new(),
            values,
        }
    }

    fn pick(
        &mut self,
        columns: &[ArrayRef],
        group_indices: &[usize],
        filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        if columns.len() != N + 1 {
            return internal_err!("pick: {} columns, expected {}", columns.len(), N + 1);
        }
        self.best.resize(total_num_groups, None);
        self.values.resize(total_num_groups);

        let input = self.values.input(&columns[0])?;
        let value_nulls = columns[0].logical_nulls();
        let keys = self
            .rule
            .keys
            .iter()
            .zip(&columns[1..])
            .map(|(rule, array)| {
                Ok((
                    i64::encode(array.as_ref(), rule.prefer)?,
                    array.logical_nulls(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let filter = filter.map(selected);

        'rows: for (row, &group) in group_indices.iter().enumerate() {
            if filter.as_ref().is_some_and(|f| !f.value(row))
                || value_nulls.as_ref().is_some_and(|n| n.is_null(row))
            {
                continue;
            }
            let mut key = [None; N];
            for (j, (codes, nulls)) in keys.iter().enumerate() {
                if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                    if self.rule.keys[j].nulls == NullKey::SkipsRow {
                        continue 'rows;
                    }
                } else {
                    key[j] = Some(codes[row]);
                }
            }
            let better = match &self.best[group] {
                None => true,
                Some(current) => match key.cmp(current) {
                    Ordering::Greater => true,
                    Ordering::Less => false,
                    Ordering::Equal => self.values.rank(&input, row, group).is_gt(),
                },
            };
            if better {
                self.best[group] = Some(key);
                self.values.store(&input, row, group);
            }
        }
        Ok(())
    }

    /// The taken groups' keys and a null buffer marking the empty ones.
    fn take_best(&mut self, emit_to: EmitTo) -> (Vec<BestKeys<N>>, Option<NullBuffer>) {
        let best = emit_to.take_needed(&mut self.best);
        let nulls = NullBuffer::from_iter(best.iter().map(Option::is_some));
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        (best, nulls)
    }
}

/// The rows a FILTER clause keeps: true and not NULL.
fn selected(filter: &BooleanArray) -> BooleanBuffer {
    match filter.nulls() {
        Some(nulls) => filter.values() & nulls.inner(),
        None => filter.values().clone(),
    }
}

impl<const N: usize, V: ValueStore> GroupsAccumulator for PickGroups<N, V> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.pick(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (_, nulls) = self.take_best(emit_to);
        self.values.take(emit_to, nulls)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (best, nulls) = self.take_best(emit_to);
        let mut state = vec![self.values.take(emit_to, nulls)?];
        for (j, (rule, data_type)) in self.rule.keys.iter().zip(&self.key_types).enumerate() {
            let key = |b: &BestKeys<N>| b.and_then(|k| k[j]);
            let codes = best.iter().map(|b| key(b).unwrap_or_default()).collect();
            let nulls = NullBuffer::from_iter(best.iter().map(|b| key(b).is_some()));
            state.push(i64::decode(codes, Some(nulls), data_type, rule.prefer)?);
        }
        Ok(state)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        // A state row is an input row, the best of its partition: picking again merges.
        self.pick(values, group_indices, None, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut state = values.to_vec();
        if let (Some(filter), Some(value)) = (opt_filter, state.first_mut()) {
            // A row the filter drops becomes a row without a value, which never counts.
            let dropped = BooleanArray::new(!&selected(filter), None);
            *value = nullif(value.as_ref(), &dropped)?;
        }
        Ok(state)
    }

    fn size(&self) -> usize {
        self.best.capacity() * size_of::<BestKeys<N>>() + self.values.size()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array, StringViewArray};
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;
    use crate::survivorship::pick::{KeyKind, KeyRule};

    const EARLIEST: PickRule = PickRule {
        keys: &[KeyRule {
            name: "ts",
            kind: KeyKind::Time,
            prefer: Prefer::Least,
            nulls: NullKey::SkipsRow,
        }],
        value: Prefer::Least,
    };

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringViewArray::from(values.to_vec()))
    }

    fn ints(values: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(values.to_vec()))
    }

    #[test]
    fn states_of_partitions_merge_and_emit_in_parts() -> Result<()> {
        let types = [DataType::Utf8View, DataType::Int64];
        // Partition 1 sees groups 0 and 1, partition 2 groups 1 and 2.
        let mut p1 = new_accumulator(&types, EARLIEST)?;
        p1.update_batch(
            &[
                strings(&[Some("b"), Some("x"), None, Some("a")]),
                ints(&[Some(5), Some(7), Some(1), Some(5)]),
            ],
            &[0, 1, 0, 0],
            None,
            2,
        )?;
        let mut p2 = new_accumulator(&types, EARLIEST)?;
        p2.update_batch(
            &[
                strings(&[Some("y"), Some("z"), Some("w")]),
                ints(&[Some(3), None, Some(9)]),
            ],
            &[0, 1, 1],
            Some(&BooleanArray::from(vec![Some(true), Some(true), None])),
            2,
        )?;
        let mut last = new_accumulator(&types, EARLIEST)?;
        // p1's groups are final groups 0 and 1, p2's are 1 and 2.
        last.merge_batch(&p1.state(EmitTo::All)?, &[0, 1], 2)?;
        last.merge_batch(&p2.state(EmitTo::All)?, &[1, 2], 3)?;
        let first = last.evaluate(EmitTo::First(1))?;
        assert_eq!(
            first.as_string_view().iter().collect::<Vec<_>>(),
            vec![Some("a")]
        );
        let rest = last.state(EmitTo::All)?;
        assert_eq!(
            rest[0].as_string_view().iter().collect::<Vec<_>>(),
            vec![Some("y"), None]
        );
        assert_eq!(
            rest[1]
                .as_primitive::<Int64Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(3), None]
        );
        Ok(())
    }

    #[test]
    fn filtered_rows_do_not_reach_the_state() -> Result<()> {
        let acc = new_accumulator(&[DataType::Int64, DataType::Int64], EARLIEST)?;
        let state = acc.convert_to_state(
            &[
                ints(&[Some(1), Some(2), Some(3)]),
                ints(&[Some(1), Some(1), None]),
            ],
            Some(&BooleanArray::from(vec![Some(false), Some(true), None])),
        )?;
        assert_eq!(
            state[0]
                .as_primitive::<Int64Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![None, Some(2), None]
        );
        Ok(())
    }
}
