//! `most_frequent(value)`: the value seen most often, the smallest of them on a tie.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{make_comparator, Array, ArrayRef, AsArray};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{exec_err, internal_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::utils::{format_state_name, AggregateOrderSensitivity};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, Expr, GroupsAccumulator, Signature, Volatility,
};
use datafusion_macros::user_doc;

use super::count_groups::{self, counts_supported, Output};

use super::pick::is_orderable;

#[user_doc(
    doc_section(label = "Survivorship Functions"),
    description = r#"Aggregate function: returns the most frequent non-NULL value, the one on most rows. When several values are equally frequent, the smallest of them is returned (in the order of `ORDER BY`), so the result never depends on the order of the rows.

NULLs are not counted: a group whose values are all NULL gives NULL. `value` may be of any type that can be ordered; the result has its type. Counting is exact, so memory grows with the number of distinct values of a group. Works with `GROUP BY` over any number of groups and as a window function, sliding frames included. `DISTINCT` is refused: every value would count once."#,
    syntax_example = "most_frequent(value)",
    sql_example = r#"```sql
> SELECT most_frequent(city) AS city FROM (VALUES ('Lyon'), ('Paris'), (NULL), ('Lyon'), (NULL), ('Paris'), ('Nice')) AS t(city);
+------+
| city |
+------+
| Lyon |
+------+
```"#,
    argument(
        name = "value",
        description = "The attribute to vote on: an expression of any orderable type."
    ),
    related_udf(name = "collect_distinct"),
    related_udf(name = "first_by_priority")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MostFrequentFunc {
    signature: Signature,
}

impl Default for MostFrequentFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl MostFrequentFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// `coerce_types` of the one-argument aggregates: any orderable type, dictionaries decoded.
pub(crate) fn coerce_one_orderable(
    function: &str,
    arg_types: &[DataType],
) -> Result<Vec<DataType>> {
    let [given] = arg_types else {
        return plan_err!(
            "{function} takes one value, but was called with {} argument(s)",
            arg_types.len()
        );
    };
    let t = match given {
        DataType::Dictionary(_, value) => value.as_ref().clone(),
        other => other.clone(),
    };
    if !is_orderable(&t) {
        return plan_err!(
            "{function}: the value must be of a type that can be ordered, not {given}"
        );
    }
    Ok(vec![t])
}

impl AggregateUDFImpl for MostFrequentFunc {
    fn name(&self) -> &str {
        "most_frequent"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_one_orderable(self.name(), arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [value] => Ok(value.clone()),
            _ => plan_err!("{} takes one value", self.name()),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return distinct_refused();
        }
        Ok(Box::new(MostFrequentAccumulator::new(args.return_type())))
    }

    /// Refuses `DISTINCT` while planning: a lone `agg(DISTINCT x)` is otherwise rewritten
    /// into a `GROUP BY x` before any accumulator sees the flag. The call is kept as is.
    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        Some(Box::new(|call: AggregateFunction, _| {
            if call.params.distinct {
                return distinct_refused();
            }
            Ok(Expr::AggregateFunction(call))
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |name: &str, item: &DataType| {
            Arc::new(Field::new(
                format_state_name(args.name, name),
                DataType::new_list(item.clone(), true),
                true,
            ))
        };
        Ok(vec![
            list("values", args.return_type()),
            list("counts", &DataType::Int64),
        ])
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.is_distinct
            && args.expr_fields.len() == 1
            && counts_supported(args.expr_fields[0].data_type())
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        match args.expr_fields {
            [value] => count_groups::new_accumulator(value.data_type(), Output::MostFrequent),
            _ => internal_err!(
                "{} planned with {} arguments",
                self.name(),
                args.expr_fields.len()
            ),
        }
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}

fn distinct_refused<T>() -> Result<T> {
    plan_err!("most_frequent(DISTINCT ...) would count every value once: call most_frequent(value)")
}

/// Exact counts of one group's values; the state is the lists of values and counts.
#[derive(Debug)]
struct MostFrequentAccumulator {
    data_type: DataType,
    counts: HashMap<ScalarValue, i64>,
}

impl MostFrequentAccumulator {
    fn new(data_type: &DataType) -> Self {
        Self {
            data_type: data_type.clone(),
            counts: HashMap::new(),
        }
    }

    /// Add `delta` to the count of every non-NULL value of `values`, or of `counts[i]`
    /// for the value at `i` when counts are given.
    fn add(&mut self, values: &dyn Array, counts: Option<&[i64]>, sign: i64) -> Result<()> {
        let nulls = values.logical_nulls();
        for row in 0..values.len() {
            if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                continue;
            }
            let value = ScalarValue::try_from_array(values, row)?;
            let delta = sign * counts.map_or(1, |c| c[row]);
            match self.counts.get_mut(&value) {
                Some(count) => {
                    *count += delta;
                    if *count <= 0 {
                        self.counts.remove(&value);
                    }
                }
                None if delta > 0 => {
                    self.counts.insert(value, delta);
                }
                None => {}
            }
        }
        Ok(())
    }
}

impl Accumulator for MostFrequentAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values {
            [values] => self.add(values.as_ref(), None, 1),
            _ => internal_err!("most_frequent: {} columns, expected 1", values.len()),
        }
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values {
            [values] => self.add(values.as_ref(), None, -1),
            _ => internal_err!("most_frequent: {} columns, expected 1", values.len()),
        }
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let Some(&top) = self.counts.values().max() else {
            return ScalarValue::try_from(&self.data_type);
        };
        let tied: Vec<ScalarValue> = self
            .counts
            .iter()
            .filter(|(_, &c)| c == top)
            .map(|(v, _)| v.clone())
            .collect();
        if tied.len() == 1 {
            return Ok(tied.into_iter().next().unwrap_or(ScalarValue::Null));
        }
        // The smallest in Arrow's order (the order of ORDER BY), floats included.
        let array = ScalarValue::iter_to_array(tied)?;
        let cmp = make_comparator(array.as_ref(), array.as_ref(), SortOptions::default())?;
        let smallest =
            (1..array.len()).fold(0, |best, i| if cmp(i, best).is_lt() { i } else { best });
        ScalarValue::try_from_array(&array, smallest)
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self.counts.capacity() * (size_of::<ScalarValue>() + size_of::<i64>())
            + self
                .counts
                .keys()
                .map(|v| v.size() - size_of_val(v))
                .sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (values, counts): (Vec<ScalarValue>, Vec<i64>) =
            self.counts.iter().map(|(v, &c)| (v.clone(), c)).unzip();
        let values = if values.is_empty() {
            datafusion::arrow::array::new_empty_array(&self.data_type)
        } else {
            ScalarValue::iter_to_array(values)?
        };
        let counts: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(counts));
        Ok(vec![
            SingleRowListArrayBuilder::new(values).build_list_scalar(),
            SingleRowListArrayBuilder::new(counts).build_list_scalar(),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [values, counts] = states else {
            return internal_err!("most_frequent: {} state columns, expected 2", states.len());
        };
        let values = values.as_list::<i32>();
        let counts = counts.as_list::<i32>();
        for row in 0..values.len() {
            if values.is_null(row) || counts.is_null(row) {
                continue;
            }
            let group_values = values.value(row);
            let group_counts = counts.value(row);
            let group_counts = group_counts.as_primitive::<Int64Type>();
            if group_counts.len() != group_values.len() {
                return exec_err!(
                    "most_frequent: a partial state has mismatched values and counts"
                );
            }
            self.add(group_values.as_ref(), Some(group_counts.values()), 1)?;
        }
        Ok(())
    }
}
