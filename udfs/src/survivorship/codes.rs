//! Order-preserving codes of Arrow values, so that the group accumulators compare and store
//! plain integers or bytes whatever the column type.
//!
//! Every primitive type of up to 64 bits (integers, floats, dates, times, timestamps,
//! durations, `Decimal32`/`Decimal64`, booleans) maps to an `i64` whose integer order is
//! the type's sort order, `Decimal128` to an `i128`; text and binary values are compared
//! as their bytes (UTF-8 byte order is code point order, Arrow's order for strings). Floats
//! follow IEEE 754 total order, as `ORDER BY` does: `-0.0 < 0.0` and NaN above infinity.
//!
//! A code can be taken "preferring the least": it is then inverted (`!code`) so that, in
//! every accumulator, a greater code is always the better one. Decoding undoes both steps
//! exactly, so a value comes back with its bits and its type (timestamp time zone, decimal
//! precision and scale) unchanged.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryViewBuilder, BooleanArray, GenericBinaryBuilder,
    GenericStringBuilder, PrimitiveArray, StringViewBuilder,
};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal32Type, Decimal64Type,
    DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType, DurationSecondType,
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, Time32MillisecondType,
    Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::common::{internal_err, Result};

/// Which end of the order an aggregate keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefer {
    Greatest,
    Least,
}

/// How a type is coded, or `None` when only the generic accumulator handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    I64,
    I128,
    Bytes,
    None,
}

pub(crate) fn code_of(data_type: &DataType) -> Code {
    use DataType::*;
    match data_type {
        Boolean
        | Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Float32
        | Float64
        | Date32
        | Date64
        | Decimal32(_, _)
        | Decimal64(_, _)
        | Duration(_)
        | Timestamp(_, _) => Code::I64,
        Time32(TimeUnit::Second | TimeUnit::Millisecond) => Code::I64,
        Time64(TimeUnit::Microsecond | TimeUnit::Nanosecond) => Code::I64,
        Decimal128(_, _) => Code::I128,
        Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView => Code::Bytes,
        _ => Code::None,
    }
}

/// IEEE 754 total order as signed integer order: flip the magnitude bits of negatives.
/// The map is its own inverse.
fn f64_order(bits: i64) -> i64 {
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

fn f32_order(bits: i32) -> i32 {
    bits ^ ((((bits >> 31) as u32) >> 1) as i32)
}

const U64_SIGN: u64 = 1 << 63;

/// A fixed-width code: `i64` or `i128`.
pub(crate) trait FixedCode: Copy + Ord + Default + Send + Sync + 'static {
    /// The codes of every row of `array` (NULL rows get an arbitrary code).
    fn encode(array: &dyn Array, prefer: Prefer) -> Result<Vec<Self>>;

    /// An array of `data_type` from codes made by [`FixedCode::encode`] with `prefer`.
    fn decode(
        codes: Vec<Self>,
        nulls: Option<NullBuffer>,
        data_type: &DataType,
        prefer: Prefer,
    ) -> Result<ArrayRef>;
}

impl FixedCode for i64 {
    fn encode(array: &dyn Array, prefer: Prefer) -> Result<Vec<i64>> {
        // `x ^ -1` is `!x`: inverting reverses the order.
        let flip: i64 = if prefer == Prefer::Least { -1 } else { 0 };
        macro_rules! encode {
            ($t:ty, $f:expr) => {{
                let f = $f;
                array
                    .as_primitive::<$t>()
                    .values()
                    .iter()
                    .map(|&v| f(v) ^ flip)
                    .collect()
            }};
        }
        use DataType::*;
        Ok(match array.data_type() {
            Boolean => array
                .as_boolean()
                .values()
                .iter()
                .map(|b| i64::from(b) ^ flip)
                .collect(),
            Int8 => encode!(Int8Type, i64::from),
            Int16 => encode!(Int16Type, i64::from),
            Int32 => encode!(Int32Type, i64::from),
            Int64 => encode!(Int64Type, |v: i64| v),
            UInt8 => encode!(UInt8Type, i64::from),
            UInt16 => encode!(UInt16Type, i64::from),
            UInt32 => encode!(UInt32Type, i64::from),
            UInt64 => encode!(UInt64Type, |v: u64| (v ^ U64_SIGN) as i64),
            Float32 => encode!(Float32Type, |v: f32| i64::from(f32_order(
                v.to_bits() as i32
            ))),
            Float64 => encode!(Float64Type, |v: f64| f64_order(v.to_bits() as i64)),
            Date32 => encode!(Date32Type, i64::from),
            Date64 => encode!(Date64Type, |v: i64| v),
            Decimal32(_, _) => encode!(Decimal32Type, i64::from),
            Decimal64(_, _) => encode!(Decimal64Type, |v: i64| v),
            Time32(TimeUnit::Second) => encode!(Time32SecondType, i64::from),
            Time32(TimeUnit::Millisecond) => encode!(Time32MillisecondType, i64::from),
            Time64(TimeUnit::Microsecond) => encode!(Time64MicrosecondType, |v: i64| v),
            Time64(TimeUnit::Nanosecond) => encode!(Time64NanosecondType, |v: i64| v),
            Timestamp(TimeUnit::Second, _) => encode!(TimestampSecondType, |v: i64| v),
            Timestamp(TimeUnit::Millisecond, _) => encode!(TimestampMillisecondType, |v: i64| v),
            Timestamp(TimeUnit::Microsecond, _) => encode!(TimestampMicrosecondType, |v: i64| v),
            Timestamp(TimeUnit::Nanosecond, _) => encode!(TimestampNanosecondType, |v: i64| v),
            Duration(TimeUnit::Second) => encode!(DurationSecondType, |v: i64| v),
            Duration(TimeUnit::Millisecond) => encode!(DurationMillisecondType, |v: i64| v),
            Duration(TimeUnit::Microsecond) => encode!(DurationMicrosecondType, |v: i64| v),
            Duration(TimeUnit::Nanosecond) => encode!(DurationNanosecondType, |v: i64| v),
            other => return internal_err!("no 64-bit code for {other}"),
        })
    }

    fn decode(
        codes: Vec<i64>,
        nulls: Option<NullBuffer>,
        data_type: &DataType,
        prefer: Prefer,
    ) -> Result<ArrayRef> {
        let flip: i64 = if prefer == Prefer::Least { -1 } else { 0 };
        macro_rules! decode {
            ($t:ty, $f:expr) => {{
                let f = $f;
                let values: ScalarBuffer<_> = codes.iter().map(|&c| f(c ^ flip)).collect();
                Arc::new(PrimitiveArray::<$t>::new(values, nulls).with_data_type(data_type.clone()))
            }};
        }
        use DataType::*;
        Ok(match data_type {
            Boolean => Arc::new(BooleanArray::new(
                codes.iter().map(|&c| (c ^ flip) != 0).collect(),
                nulls,
            )),
            Int8 => decode!(Int8Type, |c: i64| c as i8),
            Int16 => decode!(Int16Type, |c: i64| c as i16),
            Int32 => decode!(Int32Type, |c: i64| c as i32),
            Int64 => decode!(Int64Type, |c: i64| c),
            UInt8 => decode!(UInt8Type, |c: i64| c as u8),
            UInt16 => decode!(UInt16Type, |c: i64| c as u16),
            UInt32 => decode!(UInt32Type, |c: i64| c as u32),
            UInt64 => decode!(UInt64Type, |c: i64| (c as u64) ^ U64_SIGN),
            Float32 => decode!(Float32Type, |c: i64| f32::from_bits(
                f32_order(c as i32) as u32
            )),
            Float64 => decode!(Float64Type, |c: i64| f64::from_bits(f64_order(c) as u64)),
            Date32 => decode!(Date32Type, |c: i64| c as i32),
            Date64 => decode!(Date64Type, |c: i64| c),
            Decimal32(_, _) => decode!(Decimal32Type, |c: i64| c as i32),
            Decimal64(_, _) => decode!(Decimal64Type, |c: i64| c),
            Time32(TimeUnit::Second) => decode!(Time32SecondType, |c: i64| c as i32),
            Time32(TimeUnit::Millisecond) => decode!(Time32MillisecondType, |c: i64| c as i32),
            Time64(TimeUnit::Microsecond) => decode!(Time64MicrosecondType, |c: i64| c),
            Time64(TimeUnit::Nanosecond) => decode!(Time64NanosecondType, |c: i64| c),
            Timestamp(TimeUnit::Second, _) => decode!(TimestampSecondType, |c: i64| c),
            Timestamp(TimeUnit::Millisecond, _) => decode!(TimestampMillisecondType, |c: i64| c),
            Timestamp(TimeUnit::Microsecond, _) => decode!(TimestampMicrosecondType, |c: i64| c),
            Timestamp(TimeUnit::Nanosecond, _) => decode!(TimestampNanosecondType, |c: i64| c),
            Duration(TimeUnit::Second) => decode!(DurationSecondType, |c: i64| c),
            Duration(TimeUnit::Millisecond) => decode!(DurationMillisecondType, |c: i64| c),
            Duration(TimeUnit::Microsecond) => decode!(DurationMicrosecondType, |c: i64| c),
            Duration(TimeUnit::Nanosecond) => decode!(DurationNanosecondType, |c: i64| c),
            other => return internal_err!("no 64-bit code for {other}"),
        })
    }
}

impl FixedCode for i128 {
    fn encode(array: &dyn Array, prefer: Prefer) -> Result<Vec<i128>> {
        let flip: i128 = if prefer == Prefer::Least { -1 } else { 0 };
        match array.data_type() {
            DataType::Decimal128(_, _) => Ok(array
                .as_primitive::<Decimal128Type>()
                .values()
                .iter()
                .map(|&v| v ^ flip)
                .collect()),
            other => internal_err!("no 128-bit code for {other}"),
        }
    }

    fn decode(
        codes: Vec<i128>,
        nulls: Option<NullBuffer>,
        data_type: &DataType,
        prefer: Prefer,
    ) -> Result<ArrayRef> {
        let flip: i128 = if prefer == Prefer::Least { -1 } else { 0 };
        match data_type {
            DataType::Decimal128(_, _) => {
                let values: ScalarBuffer<i128> = codes.iter().map(|&c| c ^ flip).collect();
                Ok(Arc::new(
                    PrimitiveArray::<Decimal128Type>::new(values, nulls)
                        .with_data_type(data_type.clone()),
                ))
            }
            other => internal_err!("no 128-bit code for {other}"),
        }
    }
}

/// Per-row byte access to a text or binary column of any of Arrow's six byte types.
pub(crate) enum ByteValues<'a> {
    Utf8(&'a datafusion::arrow::array::StringArray),
    LargeUtf8(&'a datafusion::arrow::array::LargeStringArray),
    Utf8View(&'a datafusion::arrow::array::StringViewArray),
    Binary(&'a datafusion::arrow::array::BinaryArray),
    LargeBinary(&'a datafusion::arrow::array::LargeBinaryArray),
    BinaryView(&'a datafusion::arrow::array::BinaryViewArray),
}

impl<'a> ByteValues<'a> {
    pub(crate) fn try_new(array: &'a dyn Array) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Utf8 => Self::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => Self::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => Self::Utf8View(array.as_string_view()),
            DataType::Binary => Self::Binary(array.as_binary::<i32>()),
            DataType::LargeBinary => Self::LargeBinary(array.as_binary::<i64>()),
            DataType::BinaryView => Self::BinaryView(array.as_binary_view()),
            other => return internal_err!("{other} is not a text or binary type"),
        })
    }

    /// The bytes at `row`, whether or not it is NULL.
    #[inline]
    pub(crate) fn get(&self, row: usize) -> &'a [u8] {
        match self {
            Self::Utf8(a) => a.value(row).as_bytes(),
            Self::LargeUtf8(a) => a.value(row).as_bytes(),
            Self::Utf8View(a) => a.value(row).as_bytes(),
            Self::Binary(a) => a.value(row),
            Self::LargeBinary(a) => a.value(row),
            Self::BinaryView(a) => a.value(row),
        }
    }
}

/// An array of `data_type` (one of the six byte types) holding `values`, `None` for NULL.
/// Text values must be the UTF-8 bytes of a string read by [`ByteValues`].
pub(crate) fn bytes_to_array<'a>(
    data_type: &DataType,
    values: impl ExactSizeIterator<Item = Option<&'a [u8]>>,
) -> Result<ArrayRef> {
    fn text(bytes: &[u8]) -> Result<&str> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(e) => internal_err!("a stored text value is not UTF-8: {e}"),
        }
    }
    let rows = values.len();
    Ok(match data_type {
        DataType::Utf8 => {
            let mut b = GenericStringBuilder::<i32>::with_capacity(rows, rows * 16);
            for v in values {
                b.append_option(v.map(text).transpose()?);
            }
            Arc::new(b.finish())
        }
        DataType::LargeUtf8 => {
            let mut b = GenericStringBuilder::<i64>::with_capacity(rows, rows * 16);
            for v in values {
                b.append_option(v.map(text).transpose()?);
            }
            Arc::new(b.finish())
        }
        DataType::Utf8View => {
            let mut b = StringViewBuilder::with_capacity(rows);
            for v in values {
                b.append_option(v.map(text).transpose()?);
            }
            Arc::new(b.finish())
        }
        DataType::Binary => {
            let mut b = GenericBinaryBuilder::<i32>::with_capacity(rows, rows * 16);
            for v in values {
                b.append_option(v);
            }
            Arc::new(b.finish())
        }
        DataType::LargeBinary => {
            let mut b = GenericBinaryBuilder::<i64>::with_capacity(rows, rows * 16);
            for v in values {
                b.append_option(v);
            }
            Arc::new(b.finish())
        }
        DataType::BinaryView => {
            let mut b = BinaryViewBuilder::with_capacity(rows);
            for v in values {
                b.append_option(v);
            }
            Arc::new(b.finish())
        }
        other => return internal_err!("{other} is not a text or binary type"),
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        Decimal128Array, Float32Array, Float64Array, Int8Array, TimestampMillisecondArray,
        UInt64Array,
    };
    use datafusion::arrow::compute::{sort_to_indices, SortOptions};

    use super::*;

    /// Codes sort like Arrow sorts, and decode to the same array.
    fn round_trip<C: FixedCode>(array: ArrayRef) -> Result<()> {
        for prefer in [Prefer::Greatest, Prefer::Least] {
            let codes = C::encode(array.as_ref(), prefer)?;
            let mut by_code: Vec<usize> = (0..codes.len()).collect();
            by_code.sort_by_key(|&i| codes[i]);
            if prefer == Prefer::Least {
                by_code.reverse();
            }
            let options = SortOptions {
                descending: false,
                nulls_first: true,
            };
            let by_arrow: Vec<usize> = sort_to_indices(&array, Some(options), None)?
                .values()
                .iter()
                .map(|&i| i as usize)
                .collect();
            assert_eq!(by_code, by_arrow, "{} {prefer:?}", array.data_type());
            let back = C::decode(codes, array.nulls().cloned(), array.data_type(), prefer)?;
            assert_eq!(&back, &array, "{prefer:?}");
        }
        Ok(())
    }

    #[test]
    fn codes_keep_the_sort_order_and_decode_exactly() -> Result<()> {
        round_trip::<i64>(Arc::new(Int8Array::from(vec![3, -128, 127, 0, -1])))?;
        round_trip::<i64>(Arc::new(UInt64Array::from(vec![u64::MAX, 0, 1 << 63, 5])))?;
        round_trip::<i64>(Arc::new(Float64Array::from(vec![
            1.5,
            -0.0,
            0.0,
            f64::NAN,
            f64::NEG_INFINITY,
            -2.5,
            f64::INFINITY,
        ])))?;
        round_trip::<i64>(Arc::new(Float32Array::from(vec![
            -1.0f32,
            f32::NAN,
            0.0,
            -f32::INFINITY,
            7.25,
        ])))?;
        round_trip::<i64>(Arc::new(
            TimestampMillisecondArray::from(vec![5, -3, 1_700_000_000_000])
                .with_timezone("Europe/Paris"),
        ))?;
        round_trip::<i128>(Arc::new(
            Decimal128Array::from(vec![i128::MIN, 12_345, -1, i128::MAX])
                .with_precision_and_scale(38, 2)?,
        ))?;
        Ok(())
    }

    #[test]
    fn uncoded_types_are_reported_not_panicked_on() {
        assert_eq!(code_of(&DataType::Float16), Code::None);
        assert_eq!(code_of(&DataType::Utf8View), Code::Bytes);
        let array = datafusion::arrow::array::new_null_array(&DataType::Null, 2);
        assert!(i64::encode(array.as_ref(), Prefer::Greatest).is_err());
        assert!(ByteValues::try_new(array.as_ref()).is_err());
    }
}
