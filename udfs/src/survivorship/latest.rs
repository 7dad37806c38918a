//! `latest(value, ts)`: the value of the most recent row that has one.

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, GroupsAccumulator, Signature, Volatility,
};
use datafusion_macros::user_doc;

use super::codes::Prefer;
use super::pick::{
    coerce_pick_args, pick_accumulator, pick_groups_accumulator, pick_groups_supported,
    pick_state_fields, rule_for_call, KeyKind, KeyRule, NullKey,
};

const KEYS: &[KeyRule] = &[KeyRule {
    name: "ts",
    kind: KeyKind::Time,
    prefer: Prefer::Greatest,
    nulls: NullKey::SkipsRow,
}];
const VALUE: Prefer = Prefer::Greatest;
const USAGE: &str = "a value and a timestamp (value, ts)";

#[user_doc(
    doc_section(label = "Survivorship Functions"),
    description = r#"Aggregate function: returns the value of the most recent row, the row with the greatest `ts` among the rows whose `value` is not NULL. Rows with a NULL `ts` are ignored. When several rows share the greatest `ts`, the greatest of their values is returned, so the result never depends on the order of the rows.

Returns NULL for a group without a row that has both a value and a `ts`. `value` may be of any type that can be ordered (text, numbers, booleans, dates, timestamps, ...); the result has its type. `ts` may be a timestamp, date, time, number or text (ISO 8601 text sorts in time order, but is slower than a timestamp over many groups). Works with `GROUP BY` over any number of groups, and as a window function over frames that start at the first row of the partition (the default frame)."#,
    syntax_example = "latest(value, ts)",
    sql_example = r#"```sql
> SELECT latest(email, updated_at) AS email FROM (VALUES ('old@x.com', DATE '2023-01-05'), ('new@x.com', DATE '2024-03-01'), (NULL, DATE '2024-06-01')) AS t(email, updated_at);
+-----------+
| email     |
+-----------+
| new@x.com |
+-----------+
```"#,
    argument(
        name = "value",
        description = "The attribute to keep: an expression of any orderable type."
    ),
    argument(
        name = "ts",
        description = "When the value was seen: a timestamp, date, time, number or text expression; the greatest wins."
    ),
    related_udf(name = "earliest"),
    related_udf(name = "first_by_priority")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LatestFunc {
    signature: Signature,
}

impl Default for LatestFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl LatestFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for LatestFunc {
    fn name(&self) -> &str {
        "latest"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_pick_args(self.name(), USAGE, arg_types, KEYS, 0)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(value) => Ok(value.clone()),
            None => plan_err!("{} takes {USAGE}", self.name()),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        pick_accumulator(&args, rule_for_call(self.name(), &args, KEYS, VALUE)?)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(pick_state_fields(&args, KEYS))
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        pick_groups_supported(&args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        pick_groups_accumulator(&args, rule_for_call(self.name(), &args, KEYS, VALUE)?)
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.doc()
    }
}
