use std::sync::Arc;

use bytes::BytesMut;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int32Array,
    Int64Array, ListArray, RecordBatch, StringArray, StringViewArray, TimestampMicrosecondArray,
    TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::Int32Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::types::format::FormatOptions;

use super::*;

fn float(v: f64) -> String {
    let mut out = BytesMut::new();
    float_text(v, false, &mut out);
    String::from_utf8(out.to_vec()).expect("utf8")
}

fn real(v: f32) -> String {
    let mut out = BytesMut::new();
    float_text(v, true, &mut out);
    String::from_utf8(out.to_vec()).expect("utf8")
}

/// What PostgreSQL 15 prints for these (`SELECT x::float8`, extra_float_digits = 1).
#[test]
fn floats_read_as_postgres_prints_them() {
    let cases = [
        (20.0, "20"),
        (1e10, "10000000000"),
        (1e20, "1e+20"),
        (1e15, "1e+15"),
        (123456789012345.0, "123456789012345"),
        (0.1, "0.1"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (-2.5, "-2.5"),
        (100.5, "100.5"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (0.30000000000000004, "0.30000000000000004"),
        (123.456, "123.456"),
        (0.0, "0"),
        (-0.0, "-0"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "Infinity"),
        (f64::NEG_INFINITY, "-Infinity"),
    ];
    for (v, text) in cases {
        assert_eq!(float(v), text, "{v:e}");
    }
    assert_eq!(real(0.1), "0.1");
    assert_eq!(real(123456.7), "123456.7");
    assert_eq!(real(1234567.0), "1.234567e+06");
    assert_eq!(real(1e-5), "1e-05");
}

fn text(days: i64, micros: Option<i64>, zone: bool) -> String {
    let mut out = BytesMut::new();
    date_text(days, micros, zone, &mut out);
    String::from_utf8(out.to_vec()).expect("utf8")
}

#[test]
fn dates_and_times_read_as_postgres_prints_them() {
    assert_eq!(text(0, None, false), "1970-01-01");
    assert_eq!(text(19_849, None, false), "2024-05-06");
    assert_eq!(text(-1, None, false), "1969-12-31");
    // The day before 0001-01-01 is 0001-12-31 BC (year 0 in the proleptic calendar).
    assert_eq!(text(-719_162, None, false), "0001-01-01");
    assert_eq!(text(-719_163, None, false), "0001-12-31 BC");
    assert_eq!(text(2_932_896, None, false), "9999-12-31");
    assert_eq!(text(2_932_897, None, false), "10000-01-01");
    let t = 19_724 * MICROS_PER_DAY + (3 * 3600 + 4 * 60 + 5) * 1_000_000;
    let mut out = BytesMut::new();
    timestamp_text(t, false, &mut out);
    assert_eq!(&out[..], b"2024-01-02 03:04:05");
    out.clear();
    timestamp_text(t + 500_000, true, &mut out);
    assert_eq!(&out[..], b"2024-01-02 03:04:05.5+00");
    out.clear();
    timestamp_text(t + 120, false, &mut out);
    assert_eq!(&out[..], b"2024-01-02 03:04:05.00012");
    out.clear();
    // Before 1970: the time of day is still counted forward from midnight.
    timestamp_text(-1, false, &mut out);
    assert_eq!(&out[..], b"1969-12-31 23:59:59.999999");
}

#[test]
fn decimals_keep_their_scale() {
    let d = |v, s| {
        let mut out = BytesMut::new();
        decimal_text(v, s, &mut out);
        String::from_utf8(out.to_vec()).expect("utf8")
    };
    assert_eq!(d(150, 2), "1.50");
    assert_eq!(d(-5, 3), "-0.005");
    assert_eq!(d(42, 0), "42");
    assert_eq!(d(0, 2), "0.00");
}

fn field(name: &str, ty: Type, format: FieldFormat) -> FieldInfo {
    FieldInfo::new(name.into(), None, None, ty, format)
}

/// The values of each row, as the client would read them (None for NULL).
fn values(rows: Vec<DataRow>) -> Vec<Vec<Option<Vec<u8>>>> {
    rows.into_iter()
        .map(|row| {
            let mut data = &row.data[..];
            (0..row.field_count)
                .map(|_| {
                    let len = i32::from_be_bytes(data[..4].try_into().expect("len"));
                    data = &data[4..];
                    (len >= 0).then(|| {
                        let (v, rest) = data.split_at(len as usize);
                        data = rest;
                        v.to_vec()
                    })
                })
                .collect()
        })
        .collect()
}

fn encoded(fields: Vec<FieldInfo>, columns: Vec<ArrayRef>) -> Vec<Vec<Option<Vec<u8>>>> {
    let batch =
        RecordBatch::try_from_iter(fields.iter().map(|f| f.name().to_string()).zip(columns))
            .expect("batch");
    let rows: PgWireResult<Vec<DataRow>> =
        encode(&Arc::new(fields), &FormatOptions::default(), batch).collect();
    values(rows.expect("rows"))
}

fn some(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

#[test]
fn a_batch_is_written_row_by_row_in_text() {
    let t = 19_724 * MICROS_PER_DAY;
    let got = encoded(
        vec![
            field("id", Type::INT8, FieldFormat::Text),
            field("name", Type::TEXT, FieldFormat::Text),
            field("view", Type::TEXT, FieldFormat::Text),
            field("score", Type::FLOAT8, FieldFormat::Text),
            field("ok", Type::BOOL, FieldFormat::Text),
            field("at", Type::TIMESTAMP, FieldFormat::Text),
            field("d", Type::DATE, FieldFormat::Text),
            field("n", Type::NUMERIC, FieldFormat::Text),
        ],
        vec![
            Arc::new(Int64Array::from(vec![Some(1), None])),
            Arc::new(StringArray::from(vec![Some("anna"), None])),
            Arc::new(StringViewArray::from(vec![None, Some("müller")])),
            Arc::new(Float64Array::from(vec![Some(20.0), Some(1e20)])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
            Arc::new(TimestampNanosecondArray::from(vec![Some(t * 1000), None])),
            Arc::new(Date32Array::from(vec![None, Some(19_849)])),
            Arc::new(
                Decimal128Array::from(vec![Some(150), None])
                    .with_precision_and_scale(10, 2)
                    .expect("decimal"),
            ),
        ],
    );
    assert_eq!(
        got,
        vec![
            vec![
                some("1"),
                some("anna"),
                None,
                some("20"),
                some("t"),
                some("2024-01-02 00:00:00"),
                None,
                some("1.50")
            ],
            vec![
                None,
                None,
                some("müller"),
                some("1e+20"),
                some("f"),
                None,
                some("2024-05-06"),
                None
            ],
        ]
    );
}

#[test]
fn binary_columns_use_postgres_binary_formats() {
    let t = 19_724 * MICROS_PER_DAY + 1;
    let got = encoded(
        vec![
            field("i", Type::INT4, FieldFormat::Binary),
            field("f", Type::FLOAT4, FieldFormat::Binary),
            field("at", Type::TIMESTAMPTZ, FieldFormat::Binary),
            field("d", Type::DATE, FieldFormat::Binary),
            field("b", Type::BOOL, FieldFormat::Binary),
        ],
        vec![
            Arc::new(Int32Array::from(vec![-2])),
            Arc::new(Float32Array::from(vec![1.5])),
            Arc::new(TimestampMicrosecondArray::from(vec![t]).with_timezone("UTC")),
            Arc::new(Date32Array::from(vec![10_958])),
            Arc::new(BooleanArray::from(vec![true])),
        ],
    );
    let since_2000 = t - PG_EPOCH_DAYS * MICROS_PER_DAY;
    assert_eq!(
        got,
        vec![vec![
            Some((-2i32).to_be_bytes().to_vec()),
            Some(1.5f32.to_be_bytes().to_vec()),
            Some(since_2000.to_be_bytes().to_vec()),
            Some(1i32.to_be_bytes().to_vec()),
            Some(vec![1]),
        ]]
    );
}

#[test]
fn other_types_and_settings_go_through_arrow_pg() {
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), None])]);
    let got = encoded(
        vec![
            field("l", Type::INT4_ARRAY, FieldFormat::Text),
            field("x", Type::INT4, FieldFormat::Text),
        ],
        vec![Arc::new(list), Arc::new(Int32Array::from(vec![7]))],
    );
    assert_eq!(got, vec![vec![some("{1,NULL}"), some("7")]]);
    // A session that asked for fewer float digits gets pgwire's rounding.
    let mut options = FormatOptions::default();
    options.extra_float_digits = -3;
    let fields = vec![field("f", Type::FLOAT8, FieldFormat::Text)];
    let batch = RecordBatch::try_from_iter(vec![(
        "f",
        Arc::new(Float64Array::from(vec![0.1 + 0.2])) as ArrayRef,
    )])
    .expect("batch");
    assert!(columns(&fields, &options, &batch).is_none());
    // A catalog oid column (Int32 described as oid) is arrow-pg's: oids are unsigned.
    let fields = vec![field("oid", Type::OID, FieldFormat::Binary)];
    let batch = RecordBatch::try_from_iter(vec![(
        "oid",
        Arc::new(Int32Array::from(vec![1259])) as ArrayRef,
    )])
    .expect("batch");
    assert!(columns(&fields, &FormatOptions::default(), &batch).is_none());
}
