//! Mapping between the Arrow types DataFusion plans with and the types Delta can store.
//!
//! Delta has no unsigned integers, view or large string types, or timestamps other than
//! microseconds (with or without a zone); SQL and file sources produce all of these, so a
//! table's schema is widened to the nearest Delta type when it is created and rows are
//! cast to that schema when they are written.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result};

/// The schema a Delta table gets for rows of `schema`.
pub fn delta_compatible_schema(schema: &Schema) -> Result<SchemaRef> {
    let fields = schema
        .fields()
        .iter()
        .map(|f| {
            Ok(Field::new(
                f.name(),
                delta_type(f.data_type(), f.name())?,
                f.is_nullable(),
            )
            .with_metadata(f.metadata().clone()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

fn delta_type(t: &DataType, column: &str) -> Result<DataType> {
    use DataType::*;
    Ok(match t {
        Null | Utf8View | LargeUtf8 | Utf8 => Utf8,
        BinaryView | LargeBinary | Binary | FixedSizeBinary(_) => Binary,
        Int8 => Int8,
        Int16 | UInt8 => Int16,
        Int32 | UInt16 => Int32,
        Int64 | UInt32 | UInt64 => Int64,
        Float16 | Float32 => Float32,
        Float64 => Float64,
        Boolean => Boolean,
        Date32 | Date64 => Date32,
        Timestamp(_, None) => Timestamp(TimeUnit::Microsecond, None),
        Timestamp(_, Some(_)) => Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Decimal128(p, s) if *p <= 38 => Decimal128(*p, *s),
        Decimal32(p, s) | Decimal64(p, s) => Decimal128(*p, *s),
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) | FixedSizeList(f, _) => {
            List(Arc::new(Field::new(
                f.name(),
                delta_type(f.data_type(), column)?,
                true,
            )))
        }
        Struct(fields) => Struct(
            fields
                .iter()
                .map(|f| {
                    Ok(Field::new(
                        f.name(),
                        delta_type(f.data_type(), column)?,
                        true,
                    ))
                })
                .collect::<Result<Vec<_>>>()?
                .into(),
        ),
        Dictionary(_, v) => delta_type(v, column)?,
        other => {
            return Err(DataFusionError::NotImplemented(format!(
                "column \"{column}\" has type {other}, which a managed table cannot store"
            )))
        }
    })
}

/// Cast `batch` to `schema` column by column (names are taken from `schema`).
pub fn cast_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.num_columns() != schema.fields().len() {
        return Err(DataFusionError::Plan(format!(
            "expected {} columns, got {}",
            schema.fields().len(),
            batch.num_columns()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type()).map_err(DataFusionError::from)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widens_types_delta_lacks() {
        let s = Schema::new(vec![
            Field::new("a", DataType::Utf8View, false),
            Field::new("b", DataType::UInt32, true),
            Field::new("c", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]);
        let d = delta_compatible_schema(&s).expect("compatible");
        assert_eq!(d.field(0).data_type(), &DataType::Utf8);
        assert_eq!(d.field(1).data_type(), &DataType::Int64);
        assert_eq!(
            d.field(2).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
    }

    #[test]
    fn rejects_unstorable_type_naming_the_column() {
        let s = Schema::new(vec![Field::new(
            "t",
            DataType::Time64(TimeUnit::Microsecond),
            true,
        )]);
        let err = delta_compatible_schema(&s).expect_err("time unsupported");
        assert!(err.to_string().contains("\"t\""), "{err}");
    }
}
