//! What `latest`, `earliest` and `first_by_priority` share: each keeps, per group, the one
//! row that ranks best and returns its value.
//!
//! A [`PickRule`] says how rows rank: by one or two ranking keys (a timestamp, a
//! priority), each preferring its greatest or its least value, and then by the value
//! itself, which settles ties so that the answer never depends on the order rows arrive
//! in. Rows whose value is NULL never count; a NULL key either disqualifies its row
//! ([`NullKey::SkipsRow`]) or ranks below every non-NULL key ([`NullKey::RanksLast`]).
//!
//! The partial state of a group is its best row so far (the value and the keys, in their
//! own types), so merging partial states is the same pick again. Two accumulators
//! implement the rule: [`PickAccumulator`] here, for every orderable type and for
//! aggregation without `GROUP BY` or over a window, and the group accumulator of
//! `pick_groups`, for the types that have an order-preserving code (see `codes`) and
//! many groups.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{make_comparator, new_empty_array, Array, ArrayRef, DynComparator};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{internal_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, GroupsAccumulator};

use super::codes::{code_of, Code, Prefer};
use super::pick_groups;

/// What a NULL ranking key does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NullKey {
    /// The row does not count (a `latest` row without a timestamp).
    SkipsRow,
    /// The row counts but ranks below every row with a key (a value without a priority).
    RanksLast,
}

/// One ranking key: an argument after the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyRule {
    /// The argument's name, for messages and state fields.
    pub name: &'static str,
    pub kind: KeyKind,
    pub prefer: Prefer,
    pub nulls: NullKey,
}

/// How the rows of a group rank: by `keys` in turn, then by the value (`value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PickRule {
    pub keys: &'static [KeyRule],
    pub value: Prefer,
}

/// What a ranking key accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// A point in time or anything that orders like one: a timestamp, date, time,
    /// duration, interval, number or text (ISO 8601 text sorts in time order).
    Time,
    /// A number; a source name passed as-is is the mistake this catches.
    Priority,
}

impl KeyKind {
    fn accepts(self, data_type: &DataType) -> bool {
        use DataType::*;
        let number = data_type.is_numeric();
        match self {
            Self::Priority => number,
            Self::Time => {
                number
                    || data_type.is_temporal()
                    || matches!(data_type, Interval(_) | Utf8 | LargeUtf8 | Utf8View)
            }
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Self::Priority => "a number (the lowest wins)",
            Self::Time => "a timestamp, date, time, number or text",
        }
    }
}

/// `coerce_types` of a pick function called `function` with `arg_types`: the value and
/// the `keys`, of which the last `optional` may be left out.
///
/// Dictionary-encoded arguments are decoded and an untyped NULL key becomes `Int64`. The
/// value may be of any type Arrow can order (every type but a few exotic ones), since it
/// settles ties; the keys must be of their [`KeyKind`]. The errors are plan errors that
/// say what the function takes (`usage`).
pub(crate) fn coerce_pick_args(
    function: &str,
    usage: &str,
    arg_types: &[DataType],
    keys: &[KeyRule],
    optional: usize,
) -> Result<Vec<DataType>> {
    let most = 1 + keys.len();
    if arg_types.len() < most - optional || arg_types.len() > most {
        return plan_err!(
            "{function} takes {usage}, but was called with {} argument(s)",
            arg_types.len()
        );
    }
    arg_types
        .iter()
        .enumerate()
        .map(|(i, given)| {
            let mut t = match given {
                DataType::Dictionary(_, value) => value.as_ref().clone(),
                other => other.clone(),
            };
            if i == 0 {
                if !is_orderable(&t) {
                    return plan_err!(
                        "{function}: argument 1 (value) must be of a type that can be ordered, not {given}"
                    );
                }
                return Ok(t);
            }
            let key = &keys[i - 1];
            if t == DataType::Null {
                t = DataType::Int64;
            }
            if !key.kind.accepts(&t) {
                return plan_err!(
                    "{function}: argument {} ({}) must be {}, not {given}",
                    i + 1,
                    key.name,
                    key.kind.expected()
                );
            }
            Ok(t)
        })
        .collect()
}

/// Whether Arrow can compare two values of `data_type`.
pub(crate) fn is_orderable(data_type: &DataType) -> bool {
    let empty = new_empty_array(data_type);
    make_comparator(empty.as_ref(), empty.as_ref(), SortOptions::default()).is_ok()
}

/// The state of a pick aggregate: the best row's value and keys, named after the keys
/// (`keys` may be longer than the keys passed).
pub(crate) fn pick_state_fields(args: &StateFieldsArgs, keys: &[KeyRule]) -> Vec<FieldRef> {
    let value = Field::new(
        format_state_name(args.name, "value"),
        args.return_type().clone(),
        true,
    );
    std::iter::once(Arc::new(value))
        .chain(
            keys.iter()
                .zip(args.input_fields.iter().skip(1))
                .map(|(key, field)| {
                    Arc::new(Field::new(
                        format_state_name(args.name, key.name),
                        field.data_type().clone(),
                        true,
                    ))
                }),
        )
        .collect()
}

/// The rule of a call with `args`: `keys` cut to the keys actually passed.
pub(crate) fn rule_for_call(
    function: &str,
    args: &AccumulatorArgs,
    keys: &'static [KeyRule],
    value: Prefer,
) -> Result<PickRule> {
    let passed = args.expr_fields.len().saturating_sub(1);
    if passed == 0 || passed > keys.len() {
        return internal_err!(
            "{function} planned with {} argument(s)",
            args.expr_fields.len()
        );
    }
    Ok(PickRule {
        keys: &keys[..passed],
        value,
    })
}

fn arg_types(args: &AccumulatorArgs) -> Vec<DataType> {
    args.expr_fields
        .iter()
        .map(|f| f.data_type().clone())
        .collect()
}

/// The accumulator of one group, for every orderable type.
pub(crate) fn pick_accumulator(
    args: &AccumulatorArgs,
    rule: PickRule,
) -> Result<Box<dyn Accumulator>> {
    Ok(Box::new(PickAccumulator {
        rule,
        types: arg_types(args),
        best: None,
    }))
}

/// Whether the group accumulator handles the argument types of `args`.
pub(crate) fn pick_groups_supported(args: &AccumulatorArgs) -> bool {
    let types = arg_types(args);
    types.first().is_some_and(|v| code_of(v) != Code::None)
        && types[1..].iter().all(|k| code_of(k) == Code::I64)
}

/// The accumulator of all groups at once, for the types [`pick_groups_supported`] accepts.
pub(crate) fn pick_groups_accumulator(
    args: &AccumulatorArgs,
    rule: PickRule,
) -> Result<Box<dyn GroupsAccumulator>> {
    pick_groups::new_accumulator(&arg_types(args), rule)
}

/// The best row of one group, as scalars: `[value, key...]`.
#[derive(Debug)]
struct PickAccumulator {
    rule: PickRule,
    /// Argument types: `[value, key...]`.
    types: Vec<DataType>,
    best: Option<Vec<ScalarValue>>,
}

impl PickAccumulator {
    /// Column `column` of `[value, key...]` compared between two arrays, `Greater` when the
    /// left row ranks better. NULL always ranks worst (a NULL key that disqualifies a row
    /// never gets here).
    fn comparator(
        &self,
        column: usize,
        left: &dyn Array,
        right: &dyn Array,
    ) -> Result<DynComparator> {
        let prefer = if column == 0 {
            self.rule.value
        } else {
            self.rule.keys[column - 1].prefer
        };
        let options = SortOptions {
            descending: prefer == Prefer::Least,
            nulls_first: true,
        };
        Ok(make_comparator(left, right, options)?)
    }

    /// Comparators of the ranking, keys first and the value last, between `left` and
    /// `right` (each `[value, key...]`).
    fn ranking(&self, left: &[ArrayRef], right: &[ArrayRef]) -> Result<Vec<DynComparator>> {
        (1..left.len())
            .chain([0])
            .map(|c| self.comparator(c, left[c].as_ref(), right[c].as_ref()))
            .collect()
    }
}

fn rank(comparators: &[DynComparator], left: usize, right: usize) -> Ordering {
    comparators
        .iter()
        .map(|cmp| cmp(left, right))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

impl Accumulator for PickAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if values.len() != self.types.len() {
            return internal_err!(
                "pick accumulator: {} columns, expected {}",
                values.len(),
                self.types.len()
            );
        }
        // A row counts when its value is not NULL and no disqualifying key is NULL.
        let mut deciding = vec![values[0].logical_nulls()];
        for (key, array) in self.rule.keys.iter().zip(&values[1..]) {
            if key.nulls == NullKey::SkipsRow {
                deciding.push(array.logical_nulls());
            }
        }
        let counts = |row: usize| deciding.iter().flatten().all(|n| n.is_valid(row));

        let within = self.ranking(values, values)?;
        let mut best_row: Option<usize> = None;
        for row in (0..values[0].len()).filter(|&r| counts(r)) {
            if best_row.is_none_or(|b| rank(&within, row, b).is_gt()) {
                best_row = Some(row);
            }
        }
        let Some(row) = best_row else {
            return Ok(());
        };
        if let Some(best) = &self.best {
            let stored = best
                .iter()
                .map(ScalarValue::to_array)
                .collect::<Result<Vec<_>>>()?;
            if !rank(&self.ranking(values, &stored)?, row, 0).is_gt() {
                return Ok(());
            }
        }
        self.best = Some(
            values
                .iter()
                .map(|a| ScalarValue::try_from_array(a, row))
                .collect::<Result<_>>()?,
        );
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match &self.best {
            Some(best) => Ok(best[0].clone()),
            None => ScalarValue::try_from(&self.types[0]),
        }
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self
                .best
                .as_ref()
                .map_or(0, |b| b.iter().map(ScalarValue::size).sum())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        match &self.best {
            Some(best) => Ok(best.clone()),
            None => self.types.iter().map(ScalarValue::try_from).collect(),
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        // A state row is a row of the input: the pick of picks is the pick.
        self.update_batch(states)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};

    use super::*;

    const LATEST: PickRule = PickRule {
        keys: &[KeyRule {
            name: "ts",
            kind: KeyKind::Time,
            prefer: Prefer::Greatest,
            nulls: NullKey::SkipsRow,
        }],
        value: Prefer::Greatest,
    };

    fn accumulator(rule: PickRule, types: &[DataType]) -> PickAccumulator {
        PickAccumulator {
            rule,
            types: types.to_vec(),
            best: None,
        }
    }

    #[test]
    fn partial_states_merge_to_the_single_pass_answer() -> Result<()> {
        let types = [DataType::Utf8, DataType::Int64];
        let batches: Vec<Vec<ArrayRef>> = vec![
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None, Some("b")])),
                Arc::new(Int64Array::from(vec![Some(1), Some(9), None])),
            ],
            vec![
                Arc::new(StringArray::from(vec![Some("c"), Some("d")])),
                Arc::new(Int64Array::from(vec![Some(5), Some(5)])),
            ],
            vec![
                Arc::new(StringArray::from(vec![Some("z")])),
                Arc::new(Int64Array::from(vec![Some(2)])),
            ],
        ];
        let mut whole = accumulator(LATEST, &types);
        for batch in &batches {
            whole.update_batch(batch)?;
        }
        assert_eq!(whole.evaluate()?, ScalarValue::from("d"));

        // Each batch in its own partition, states merged in either order.
        for order in [[0, 1, 2], [2, 1, 0]] {
            let mut last = accumulator(LATEST, &types);
            for &i in &order {
                let mut partial = accumulator(LATEST, &types);
                partial.update_batch(&batches[i])?;
                let state = partial
                    .state()?
                    .iter()
                    .map(ScalarValue::to_array)
                    .collect::<Result<Vec<_>>>()?;
                last.merge_batch(&state)?;
            }
            assert_eq!(last.evaluate()?, ScalarValue::from("d"));
        }
        Ok(())
    }

    #[test]
    fn an_empty_group_has_a_typed_null_state() -> Result<()> {
        let mut acc = accumulator(LATEST, &[DataType::Utf8, DataType::Int64]);
        assert_eq!(acc.evaluate()?, ScalarValue::Utf8(None));
        assert_eq!(
            acc.state()?,
            vec![ScalarValue::Utf8(None), ScalarValue::Int64(None)]
        );
        Ok(())
    }

    #[test]
    fn keys_must_be_of_their_kind() -> Result<()> {
        let list = DataType::new_list(DataType::Int64, true);
        let err = coerce_pick_args("f", "(v, ts)", &[DataType::Utf8, list], LATEST.keys, 0)
            .expect_err("a list is no timestamp");
        assert!(
            err.to_string()
                .contains("argument 2 (ts) must be a timestamp"),
            "{err}"
        );
        let dict = DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8));
        assert_eq!(
            coerce_pick_args("f", "(v, ts)", &[dict, DataType::Null], LATEST.keys, 0)?,
            vec![DataType::Utf8, DataType::Int64]
        );
        let err = coerce_pick_args("f", "(v, ts)", &[DataType::Utf8], LATEST.keys, 0)
            .expect_err("ts is required");
        assert!(
            err.to_string().contains("called with 1 argument(s)"),
            "{err}"
        );
        assert!(is_orderable(&DataType::Utf8View));
        Ok(())
    }
}
