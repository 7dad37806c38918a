//! `first_by_priority(value, priority [, ts])`: the value from the most trusted source that
//! has one.

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

/// Priority first, then recency when `ts` is given. A value whose priority or time is
/// unknown still beats having no value, so NULL keys rank last instead of dropping rows.
const KEYS: &[KeyRule] = &[
    KeyRule {
        name: "priority",
        kind: KeyKind::Priority,
        prefer: Prefer::Least,
        nulls: NullKey::RanksLast,
    },
    KeyRule {
        name: "ts",
        kind: KeyKind::Time,
        prefer: Prefer::Greatest,
        nulls: NullKey::RanksLast,
    },
];
const VALUE: Prefer = Prefer::Least;
const USAGE: &str = "a value, a priority and an optional timestamp (value, priority [, ts])";

#[user_doc(
    doc_section(label = "Survivorship Functions"),
    description = r#"Aggregate function: returns the value from the most trusted source that has one: among the rows whose `value` is not NULL, the value of the row with the lowest `priority`. Map sources to priorities with a `CASE` expression, as in the example. A row with a NULL `priority` ranks after every row with one.

With `ts`, rows of equal priority rank by recency: the greatest `ts` wins, and a row with a NULL `ts` ranks after those with one. Rows still tied (same priority and `ts`) give the smallest of their values, so the result never depends on the order of the rows.

Returns NULL for a group without a non-NULL value. `value` may be of any type that can be ordered; the result has its type. Works with `GROUP BY` over any number of groups, and as a window function over frames that start at the first row of the partition (the default frame)."#,
    syntax_example = "first_by_priority(value, priority[, ts])",
    sql_example = r#"```sql
> SELECT first_by_priority(email, CASE source WHEN 'crm' THEN 1 WHEN 'shop' THEN 2 ELSE 9 END) AS email FROM (VALUES ('shop', 'ann@shop.com'), ('crm', NULL), ('crm', 'ann@crm.com'), ('web', 'ann@web.com')) AS t(source, email);
+-------------+
| email       |
+-------------+
| ann@crm.com |
+-------------+
> SELECT first_by_priority(phone, CASE source WHEN 'crm' THEN 1 ELSE 2 END, updated_at) AS phone FROM (VALUES ('crm', NULL, DATE '2024-06-01'), ('shop', '+33600000001', DATE '2024-05-01'), ('web', '+33600000002', DATE '2024-02-01')) AS t(source, phone, updated_at);
+--------------+
| phone        |
+--------------+
| +33600000001 |
+--------------+
```"#,
    argument(
        name = "value",
        description = "The attribute to keep: an expression of any orderable type."
    ),
    argument(
        name = "priority",
        description = "How trusted the row's source is: a numeric expression; the lowest wins."
    ),
    argument(
        name = "ts",
        description = "Optional. When the value was seen, to choose between rows of equal priority: a timestamp, date, time, number or text expression; the greatest wins."
    ),
    related_udf(name = "latest"),
    related_udf(name = "most_frequent")
)]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FirstByPriorityFunc {
    signature: Signature,
}

impl Default for FirstByPriorityFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl FirstByPriorityFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for FirstByPriorityFunc {
    fn name(&self) -> &str {
        "first_by_priority"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_pick_args(self.name(), USAGE, arg_types, KEYS, 1)
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
