//! JSON in text columns (the properties, traits and context of collected events):
//! `json_get` and `json_get_text`, and PostgreSQL's `->` and `->>` operators, which
//! [`JsonOperators`] plans as calls of them; `json_build_object` builds an object.

pub mod build_object;
pub mod get;
pub mod get_text;

use datafusion::common::{exec_err, DFSchema, Result};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use serde_json::Value;

use crate::args::{all_scalar, build_utf8, Strings};
pub use build_object::JsonBuildObjectFunc;
pub use get::JsonGetFunc;
pub use get_text::JsonGetTextFunc;

/// Plans `json -> key` as `json_get(json, key)` and `json ->> key` as
/// `json_get_text(json, key)`.
#[derive(Debug, Default)]
pub struct JsonOperators;

impl ExprPlanner for JsonOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        _schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let udf = match expr.op {
            BinaryOperator::Arrow => ScalarUDF::from(JsonGetFunc::new()),
            BinaryOperator::LongArrow => ScalarUDF::from(JsonGetTextFunc::new()),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(
            udf.call(vec![expr.left, expr.right]),
        ))
    }
}

/// Evaluate `json_get` (`as_text` false) or `json_get_text` (true) over text arguments:
/// the member `key` of a JSON object, or the element at index `key` (0-based, negative
/// from the end) of a JSON array; NULL when there is none or it is JSON `null` (for
/// `json_get_text`).
fn get(name: &str, args: &[ColumnarValue], rows: usize, as_text: bool) -> Result<ColumnarValue> {
    let scalar = all_scalar(args);
    let [json, key] = args else {
        return exec_err!("{name} takes two arguments: a JSON text and a key or index");
    };
    let json = Strings::try_new(name, 0, json, rows)?;
    let key = Strings::try_new(name, 1, key, rows)?;
    build_utf8(scalar, rows, |row, out| {
        let (Some(text), Some(key)) = (json.get(row), key.get(row)) else {
            return Ok(false);
        };
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return exec_err!("invalid input syntax for type json in {name}: {e}: {text:.80}")
            }
        };
        let found = match &value {
            Value::Object(members) => members.get(key),
            Value::Array(items) => key.trim().parse::<i64>().ok().and_then(|i| {
                let i = if i < 0 { items.len() as i64 + i } else { i };
                usize::try_from(i).ok().and_then(|i| items.get(i))
            }),
            _ => None,
        };
        match found {
            None => Ok(false),
            Some(Value::Null) if as_text => Ok(false),
            Some(Value::String(s)) if as_text => {
                out.push_str(s);
                Ok(true)
            }
            Some(v) => {
                out.push_str(&v.to_string());
                Ok(true)
            }
        }
    })
}
