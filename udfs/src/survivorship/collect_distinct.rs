//! `collect_distinct(value)`: the sorted list of a group's distinct non-NULL values.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{new_empty_array, Array, ArrayRef, AsArray};
use datafusion::arrow::compute::sort;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{internal_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::{format_state_name, AggregateOrderSensitivity};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, GroupsAccumulator, Signature, Volatility,
};
use datafusion_macros::user_doc;

use super::count_groups::{self, counts_supported, Output};

use super::most_frequent::coerce_one_orderable;

#[user_doc(
    doc_section(label = "Survivorship Functions"),
    description = r#"Aggregate function: returns the distinct non-NULL values of a group as a list, sorted in ascending order (the order of `ORDER BY`), such as every email address a customer has used.

NULLs are left out; a group with no non-NULL value gives NULL, not an empty list, as `array_agg(DISTINCT ...)` gives NULL for no rows. The list holds values of the argument's type (a `List` of it). Works with `GROUP BY` over any number of groups, and as a window function over frames that start at the first row of the partition (the default frame)."#,
    syntax_example = "collect_distinct(value)",
    sql_example = r#"```sql
> SELECT collect_distinct(phone) AS phones FROM (VALUES ('+33611'), (NULL), ('+33499'), ('+33611')) AS t(phone);
+------------------+
| phones           |
+------------------+
| [+33499, +33611] |
+------------------+
```"#,
    argument(
        name = "value",
        description = "The attribute to collect: an expression of any orderable type."
    ),
    related_udf(name = "most_frequent")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CollectDistinctFunc {
    signature: Signature,
}

impl Default for CollectDistinctFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl CollectDistinctFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for CollectDistinctFunc {
    fn name(&self) -> &str {
        "collect_distinct"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_one_orderable(self.name(), arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [value] => Ok(DataType::new_list(value.clone(), true)),
            _ => plan_err!("{} takes one value", self.name()),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let Some(value) = args.expr_fields.first() else {
            return internal_err!("collect_distinct planned without an argument");
        };
        Ok(Box::new(CollectDistinctAccumulator {
            data_type: value.data_type().clone(),
            values: HashSet::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "values"),
            args.return_type().clone(),
            true,
        ))])
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
            [value] => count_groups::new_accumulator(value.data_type(), Output::CollectDistinct),
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

/// The distinct values of one group; the state is their list.
#[derive(Debug)]
struct CollectDistinctAccumulator {
    data_type: DataType,
    values: HashSet<ScalarValue>,
}

impl CollectDistinctAccumulator {
    fn add(&mut self, values: &dyn Array) -> Result<()> {
        let nulls = values.logical_nulls();
        for row in 0..values.len() {
            if nulls.as_ref().is_none_or(|n| n.is_valid(row)) {
                self.values
                    .insert(ScalarValue::try_from_array(values, row)?);
            }
        }
        Ok(())
    }

    /// The values as one array, sorted; `None` when there is none.
    fn sorted(&self) -> Result<Option<ArrayRef>> {
        if self.values.is_empty() {
            return Ok(None);
        }
        let array = ScalarValue::iter_to_array(self.values.iter().cloned())?;
        Ok(Some(sort(array.as_ref(), None)?))
    }
}

impl Accumulator for CollectDistinctAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values {
            [values] => self.add(values.as_ref()),
            _ => internal_err!("collect_distinct: {} columns, expected 1", values.len()),
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match self.sorted()? {
            Some(array) => Ok(SingleRowListArrayBuilder::new(array).build_list_scalar()),
            None => ScalarValue::try_from(DataType::new_list(self.data_type.clone(), true)),
        }
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self.values.capacity() * size_of::<ScalarValue>()
            + self
                .values
                .iter()
                .map(|v| v.size() - size_of_val(v))
                .sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        // Unsorted: the final phase sorts. An empty group's state is an empty list.
        let values = if self.values.is_empty() {
            new_empty_array(&self.data_type)
        } else {
            ScalarValue::iter_to_array(self.values.iter().cloned())?
        };
        Ok(vec![
            SingleRowListArrayBuilder::new(values).build_list_scalar()
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [lists] = states else {
            return internal_err!(
                "collect_distinct: {} state columns, expected 1",
                states.len()
            );
        };
        let lists = lists.as_list::<i32>();
        for row in 0..lists.len() {
            if lists.is_valid(row) {
                self.add(lists.value(row).as_ref())?;
            }
        }
        Ok(())
    }
}
