//! Query results on the wire: Arrow record batches to `DataRow` messages.
//!
//! The common column types are written column-wise straight from their Arrow arrays,
//! in PostgreSQL's own output format: a batch's rows share one buffer, each value is
//! formatted without an intermediate string, and floats and timestamps read as
//! PostgreSQL prints them (`20`, `1e+20`, `Infinity`, `2024-01-02 03:04:05.5`), which is
//! what text-mode clients such as psycopg2 and psql parse. A batch with a column of any
//! other type (lists, structs, intervals, binary numerics, catalog oids and `"char"`s,
//! which their field metadata describes) or a session with non-default output settings
//! (`DateStyle`, `extra_float_digits` <= 0) goes through arrow-pg's per-value encoder
//! instead. Times with a zone are shown in UTC, the only session time zone: pgwire reads
//! none from the client into its options, and datafusion-postgres' `SET TIME ZONE`
//! changes a copy of the session state.

use std::sync::Arc;

use super::fields::pg_fields;
use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, StringViewArray,
};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt8Type,
};
use datafusion::common::ParamValues;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self, Statement};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use futures::StreamExt;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

type Rows = Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync>;

/// The response for a stream of batches whose columns are described by `fields`.
pub fn response(
    fields: Arc<Vec<FieldInfo>>,
    options: Arc<FormatOptions>,
    batches: SendableRecordBatchStream,
) -> QueryResponse {
    let described = fields.clone();
    let rows = batches
        .map(move |batch| -> Rows {
            match batch {
                Ok(batch) => encode(&described, &options, batch),
                Err(e) => Box::new(std::iter::once(Err(api(e)))),
            }
        })
        .flat_map(futures::stream::iter);
    QueryResponse::new(fields, rows)
}

/// Runs the queries of the simple protocol and `DECLARE ... CURSOR` in both (after
/// datafusion-postgres' hooks for settings and transactions, before its cursor hook,
/// which serves `FETCH` and `CLOSE`), so that their rows are written here too.
pub struct QueryResults;

#[async_trait]
impl QueryHook for QueryResults {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let options = || Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        match statement {
            Statement::Query(_) => Some(run(ctx, statement, options()).await),
            Statement::Declare { stmts } => {
                let options = options();
                Some(declare(ctx, client, stmts, options).await)
            }
            _ => None,
        }
    }

    async fn handle_extended_parse_query(
        &self,
        _: &Statement,
        _: &SessionContext,
        _: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _: &LogicalPlan,
        _: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let Statement::Declare { stmts } = statement else {
            return None;
        };
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        Some(declare(ctx, client, stmts, options).await)
    }
}

/// `DECLARE name CURSOR FOR query`: the query's rows wait in the cursor's portal for
/// `FETCH` (datafusion-postgres' cursor hook serves `FETCH` and `CLOSE`).
async fn declare(
    ctx: &SessionContext,
    client: &mut dyn HookClient,
    stmts: &[ast::Declare],
    options: Arc<FormatOptions>,
) -> PgWireResult<Response> {
    for d in stmts {
        let (Some(ast::DeclareType::Cursor), Some(name), Some(query)) =
            (&d.declare_type, d.names.first(), d.for_query.as_ref())
        else {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "42601".into(),
                "DECLARE needs CURSOR, a name and a FOR query".into(),
            ))));
        };
        let query = query.to_string();
        let df = ctx.sql(&query).await.map_err(api)?;
        let rows = dataframe(df, options.clone()).await?;
        open_cursor(client.portal_store(), &name.value, query, rows).await;
    }
    Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
}

/// Open the cursor `name` of the query `query` over its `rows`.
pub async fn open_cursor<S: PortalStore<Statement = super::Statement>>(
    store: &S,
    name: &str,
    query: String,
    rows: QueryResponse,
) {
    let stored = Arc::new(StoredStatement::new(
        name.to_string(),
        (query, None),
        vec![],
    ));
    let cursor = Portal::new_cursor(name.to_string(), stored);
    cursor.start(rows).await;
    store.put_portal(Arc::new(cursor));
}

async fn run(
    ctx: &SessionContext,
    statement: &Statement,
    options: Arc<FormatOptions>,
) -> PgWireResult<Response> {
    let plan = ctx
        .state()
        .statement_to_plan(DFStatement::Statement(Box::new(statement.clone())))
        .await
        .map_err(api)?;
    let df = ctx.execute_logical_plan(plan).await.map_err(api)?;
    Ok(Response::Query(dataframe(df, options).await?))
}

/// The response for all rows of `df`, in text.
pub async fn dataframe(df: DataFrame, options: Arc<FormatOptions>) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(pg_fields(
        df.schema().as_arrow(),
        &Format::UnifiedText,
        Some(options.clone()),
    )?);
    let batches = df.execute_stream().await.map_err(api)?;
    Ok(response(fields, options, batches))
}

fn api(e: DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// The rows of one batch.
pub fn encode(fields: &Arc<Vec<FieldInfo>>, options: &FormatOptions, batch: RecordBatch) -> Rows {
    let rows =
        columns(fields, options, &batch).map(|writers| write_rows(&writers, batch.num_rows()));
    match rows {
        Some(rows) => Box::new(rows.into_iter().map(Ok)),
        None => datafusion_postgres::arrow_pg::datatypes::encode_recordbatch(fields.clone(), batch),
    }
}

/// A writer per column, or None when one of them has no fast path.
fn columns<'a>(
    fields: &[FieldInfo],
    options: &FormatOptions,
    batch: &'a RecordBatch,
) -> Option<Vec<Column<'a>>> {
    if fields.len() != batch.num_columns() {
        return None;
    }
    let settings = Settings::of(options);
    batch
        .columns()
        .iter()
        .zip(fields)
        .map(|(array, field)| Column::new(array, field, &settings))
        .collect()
}

fn write_rows(columns: &[Column], rows: usize) -> Vec<DataRow> {
    let mut buf = BytesMut::with_capacity(rows * (columns.len() * 12 + 16));
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        for column in columns {
            column.write(row, &mut buf);
        }
        // The row's bytes, leaving the rest of the allocation for the next one.
        out.push(DataRow::new(buf.split(), columns.len() as i16));
    }
    out
}

/// The session settings that change text output, as far as the fast path cares.
struct Settings {
    /// ISO dates (PostgreSQL's default `DateStyle`).
    iso_dates: bool,
    /// Shortest exact floats (`extra_float_digits` > 0, the default).
    shortest_floats: bool,
}

impl Settings {
    fn of(options: &FormatOptions) -> Self {
        Settings {
            iso_dates: options
                .date_style
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("iso"),
            shortest_floats: options.extra_float_digits > 0,
        }
    }
}

/// A column's values by row, widened to `i64`.
type Wide<'a> = Box<dyn Fn(usize) -> i64 + Send + Sync + 'a>;

/// How one column's values are written.
enum Value<'a> {
    Text(&'a StringArray),
    LargeText(&'a datafusion::arrow::array::LargeStringArray),
    TextView(&'a StringViewArray),
    Bool(&'a BooleanArray),
    /// An integer column, widened; `width` is the bytes of the PostgreSQL type.
    Int(Wide<'a>, usize),
    Float64(&'a datafusion::arrow::array::Float64Array),
    Float32(&'a datafusion::arrow::array::Float32Array),
    /// Days since 1970-01-01.
    Date(&'a datafusion::arrow::array::Date32Array),
    /// Microseconds since 1970-01-01; `zone` adds PostgreSQL's `+00`.
    Timestamp(Wide<'a>, bool),
    /// A decimal with a non-negative scale (text only).
    Decimal(&'a datafusion::arrow::array::Decimal128Array, u32),
}

struct Column<'a> {
    array: &'a ArrayRef,
    value: Value<'a>,
    binary: bool,
}

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef, field: &FieldInfo, settings: &Settings) -> Option<Self> {
        let binary = field.format() == FieldFormat::Binary;
        let value = match array.data_type() {
            DataType::Utf8 => Value::Text(array.as_string::<i32>()),
            DataType::LargeUtf8 => Value::LargeText(array.as_string::<i64>()),
            DataType::Utf8View => Value::TextView(array.as_string_view()),
            DataType::Boolean => Value::Bool(array.as_boolean()),
            DataType::Int8 => Value::Int(widened::<Int8Type>(array, 1), 2),
            DataType::Int16 => Value::Int(widened::<Int16Type>(array, 1), 2),
            DataType::UInt8 => Value::Int(widened::<UInt8Type>(array, 1), 2),
            DataType::Int32 => Value::Int(widened::<Int32Type>(array, 1), 4),
            DataType::UInt16 => Value::Int(widened::<UInt16Type>(array, 1), 4),
            DataType::Int64 => Value::Int(widened::<Int64Type>(array, 1), 8),
            DataType::UInt32 => Value::Int(widened::<UInt32Type>(array, 1), 8),
            DataType::Float64 if binary || settings.shortest_floats => {
                Value::Float64(array.as_primitive::<Float64Type>())
            }
            DataType::Float32 if binary || settings.shortest_floats => {
                Value::Float32(array.as_primitive::<Float32Type>())
            }
            DataType::Date32 if binary || settings.iso_dates => {
                Value::Date(array.as_primitive::<Date32Type>())
            }
            DataType::Timestamp(unit, zone) if binary || settings.iso_dates => {
                let micros: Wide<'a> = match unit {
                    TimeUnit::Second => widened::<TimestampSecondType>(array, 1_000_000),
                    TimeUnit::Millisecond => widened::<TimestampMillisecondType>(array, 1_000),
                    TimeUnit::Microsecond => widened::<TimestampMicrosecondType>(array, 1),
                    TimeUnit::Nanosecond => {
                        let a = array.as_primitive::<TimestampNanosecondType>();
                        Box::new(move |i| a.value(i).div_euclid(1_000))
                    }
                };
                Value::Timestamp(micros, zone.is_some())
            }
            DataType::Decimal128(_, scale) if !binary && *scale >= 0 => {
                Value::Decimal(array.as_primitive::<Decimal128Type>(), *scale as u32)
            }
            _ => return None,
        };
        if !describes(&value, field.datatype()) {
            return None;
        }
        Some(Column {
            array,
            value,
            binary,
        })
    }

    fn write(&self, row: usize, buf: &mut BytesMut) {
        if self.array.is_null(row) {
            buf.put_i32(-1);
            return;
        }
        match &self.value {
            Value::Text(a) => put_bytes(buf, a.value(row).as_bytes()),
            Value::LargeText(a) => put_bytes(buf, a.value(row).as_bytes()),
            Value::TextView(a) => put_bytes(buf, a.value(row).as_bytes()),
            Value::Bool(a) => {
                let v = a.value(row);
                match self.binary {
                    true => put_bytes(buf, &[v as u8]),
                    false => put_bytes(buf, if v { b"t" } else { b"f" }),
                }
            }
            Value::Int(get, width) => {
                let v = get(row);
                match (self.binary, *width) {
                    (true, 2) => put_bytes(buf, &(v as i16).to_be_bytes()),
                    (true, 4) => put_bytes(buf, &(v as i32).to_be_bytes()),
                    (true, _) => put_bytes(buf, &v.to_be_bytes()),
                    (false, _) => put_bytes(buf, itoa::Buffer::new().format(v).as_bytes()),
                }
            }
            Value::Float64(a) => {
                let v = a.value(row);
                match self.binary {
                    true => put_bytes(buf, &v.to_be_bytes()),
                    false => put_with(buf, |out| float_text(v, false, out)),
                }
            }
            Value::Float32(a) => {
                let v = a.value(row);
                match self.binary {
                    true => put_bytes(buf, &v.to_be_bytes()),
                    false => put_with(buf, |out| float_text(v, true, out)),
                }
            }
            Value::Date(a) => {
                let days = a.value(row) as i64;
                match self.binary {
                    true => put_bytes(buf, &((days - PG_EPOCH_DAYS) as i32).to_be_bytes()),
                    false => put_with(buf, |out| date_text(days, None, false, out)),
                }
            }
            Value::Timestamp(get, zone) => {
                let micros = get(row);
                match self.binary {
                    true => {
                        let pg = micros.saturating_sub(PG_EPOCH_DAYS * MICROS_PER_DAY);
                        put_bytes(buf, &pg.to_be_bytes())
                    }
                    false => put_with(buf, |out| timestamp_text(micros, *zone, out)),
                }
            }
            Value::Decimal(a, scale) => {
                put_with(buf, |out| decimal_text(a.value(row), *scale, out))
            }
        }
    }
}

/// Whether `ty`, the type the column is described as, is the one `value` writes: a
/// catalog column of oids or `"char"`s is described by its field metadata, not by its
/// Arrow type, and goes through arrow-pg.
fn describes(value: &Value, ty: &Type) -> bool {
    match value {
        Value::Text(_) | Value::LargeText(_) | Value::TextView(_) => {
            matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME)
        }
        Value::Bool(_) => *ty == Type::BOOL,
        Value::Int(_, 2) => *ty == Type::INT2,
        Value::Int(_, 4) => *ty == Type::INT4,
        Value::Int(_, _) => *ty == Type::INT8,
        Value::Float64(_) => *ty == Type::FLOAT8,
        Value::Float32(_) => *ty == Type::FLOAT4,
        Value::Date(_) => *ty == Type::DATE,
        Value::Timestamp(_, true) => *ty == Type::TIMESTAMPTZ,
        Value::Timestamp(_, false) => *ty == Type::TIMESTAMP,
        Value::Decimal(..) => *ty == Type::NUMERIC,
    }
}

/// The values of an integer-valued column as `i64`, each multiplied by `scale`.
fn widened<'a, T>(array: &'a ArrayRef, scale: i64) -> Wide<'a>
where
    T: ArrowPrimitiveType,
    T::Native: Into<i64>,
{
    let a = array.as_primitive::<T>();
    Box::new(move |i| a.value(i).into().saturating_mul(scale))
}

fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_i32(bytes.len() as i32);
    buf.put_slice(bytes);
}

/// A value written by `write` after its length, which is filled in afterwards.
fn put_with(buf: &mut BytesMut, write: impl FnOnce(&mut BytesMut)) {
    let at = buf.len();
    buf.put_i32(0);
    write(buf);
    let len = (buf.len() - at - 4) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// A float as PostgreSQL prints it with `extra_float_digits` > 0: the shortest digits
/// that read back exactly, in fixed notation when the decimal exponent is in -4..15
/// (-4..6 for `real`), else as `d.ddde+XX`; `NaN`, `Infinity`, `-Infinity`, `-0`.
fn float_text<F: ryu::Float + Into<f64> + Copy>(v: F, single: bool, out: &mut BytesMut) {
    let wide: f64 = v.into();
    if wide.is_nan() {
        return out.put_slice(b"NaN");
    }
    if wide.is_infinite() {
        return out.put_slice(if wide > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        });
    }
    if wide == 0.0 {
        return out.put_slice(if wide.is_sign_negative() { b"-0" } else { b"0" });
    }
    let mut ryu = ryu::Buffer::new();
    let text = ryu.format_finite(v).as_bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    // ryu writes `d.ddd`, `0.000ddd` or `d.ddde±x`: collect the significant digits and
    // the exponent of the first one.
    let (mantissa, exp10) = match text.iter().position(|&c| c == b'e') {
        Some(e) => (&text[..e], parse_exponent(&text[e + 1..])),
        None => (text, 0),
    };
    let mut digits = [0u8; 24];
    let mut n = 0;
    let mut point = None;
    let mut leading = 0i32;
    for &c in mantissa {
        if c == b'.' {
            point = Some(n as i32 + leading);
        } else if n == 0 && c == b'0' {
            leading += 1;
        } else {
            digits[n] = c;
            n += 1;
        }
    }
    while n > 1 && digits[n - 1] == b'0' {
        n -= 1;
    }
    let integer_digits = point.unwrap_or(n as i32 + leading);
    let exp = integer_digits - leading - 1 + exp10;
    let digits = &digits[..n];
    if negative {
        out.put_u8(b'-');
    }
    let fixed_below = if single { 6 } else { 15 };
    if (-4..fixed_below).contains(&exp) {
        if exp < 0 {
            out.put_slice(b"0.");
            for _ in 0..(-exp - 1) {
                out.put_u8(b'0');
            }
            out.put_slice(digits);
        } else {
            let whole = exp as usize + 1;
            if digits.len() <= whole {
                out.put_slice(digits);
                for _ in digits.len()..whole {
                    out.put_u8(b'0');
                }
            } else {
                out.put_slice(&digits[..whole]);
                out.put_u8(b'.');
                out.put_slice(&digits[whole..]);
            }
        }
    } else {
        out.put_u8(digits[0]);
        if digits.len() > 1 {
            out.put_u8(b'.');
            out.put_slice(&digits[1..]);
        }
        out.put_u8(b'e');
        out.put_u8(if exp < 0 { b'-' } else { b'+' });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.put_u8(b'0');
        }
        out.put_slice(itoa::Buffer::new().format(abs).as_bytes());
    }
}

fn parse_exponent(text: &[u8]) -> i32 {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// The civil date of a day number (days since 1970-01-01): (year, month, day).
fn civil(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn two(out: &mut BytesMut, v: u32) {
    out.put_u8(b'0' + (v / 10) as u8);
    out.put_u8(b'0' + (v % 10) as u8);
}

/// `YYYY-MM-DD`, then the time of day `micros` if given, then `+00` if `zone`; years
/// before 1 are written as PostgreSQL does (`0044-03-15 BC`).
fn date_text(days: i64, micros: Option<i64>, zone: bool, out: &mut BytesMut) {
    let (year, month, day) = civil(days);
    let bc = year <= 0;
    let shown = if bc { 1 - year } else { year };
    let digits = itoa::Buffer::new().format(shown).len();
    for _ in digits..4 {
        out.put_u8(b'0');
    }
    out.put_slice(itoa::Buffer::new().format(shown).as_bytes());
    out.put_u8(b'-');
    two(out, month);
    out.put_u8(b'-');
    two(out, day);
    if let Some(micros) = micros {
        let secs = (micros / 1_000_000) as u32;
        let fraction = (micros % 1_000_000) as u32;
        out.put_u8(b' ');
        two(out, secs / 3600);
        out.put_u8(b':');
        two(out, secs / 60 % 60);
        out.put_u8(b':');
        two(out, secs % 60);
        if fraction > 0 {
            let mut text = [b'0'; 6];
            let mut f = fraction;
            for slot in text.iter_mut().rev() {
                *slot = b'0' + (f % 10) as u8;
                f /= 10;
            }
            let end = 6 - text.iter().rev().take_while(|&&c| c == b'0').count();
            out.put_u8(b'.');
            out.put_slice(&text[..end]);
        }
    }
    if zone {
        out.put_slice(b"+00");
    }
    if bc {
        out.put_slice(b" BC");
    }
}

fn timestamp_text(micros: i64, zone: bool, out: &mut BytesMut) {
    let days = micros.div_euclid(MICROS_PER_DAY);
    date_text(days, Some(micros.rem_euclid(MICROS_PER_DAY)), zone, out)
}

/// A decimal's text: its digits with `scale` of them after the point (`1.50`).
fn decimal_text(v: i128, scale: u32, out: &mut BytesMut) {
    if v < 0 {
        out.put_u8(b'-');
    }
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(v.unsigned_abs()).as_bytes();
    let scale = scale as usize;
    if scale == 0 {
        return out.put_slice(digits);
    }
    if digits.len() > scale {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        out.put_slice(whole);
        out.put_u8(b'.');
        out.put_slice(fraction);
    } else {
        out.put_slice(b"0.");
        for _ in digits.len()..scale {
            out.put_u8(b'0');
        }
        out.put_slice(digits);
    }
}

#[cfg(test)]
mod tests;
