//! Buffered text writers and batched Parquet writers, all reporting errors with the file path.

use super::records::{PosRow, ShopRow};
use super::GenerateError;
use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per Parquet record batch / row group.
pub const PARQUET_BATCH: usize = 64 * 1024;

fn create(path: &Path) -> Result<File, GenerateError> {
    File::create(path).map_err(|source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A buffered line-oriented file (CSV or NDJSON).
pub struct TextSink {
    path: PathBuf,
    out: BufWriter<File>,
    /// Data rows written (header excluded).
    pub rows: usize,
}

impl TextSink {
    /// Creates `path`, writing `header` as the first line when given.
    pub fn create(path: PathBuf, header: Option<&str>) -> Result<Self, GenerateError> {
        let out = BufWriter::with_capacity(256 * 1024, create(&path)?);
        let mut sink = TextSink { path, out, rows: 0 };
        if let Some(h) = header {
            sink.raw(h.as_bytes())?;
            sink.raw(b"\n")?;
        }
        Ok(sink)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), GenerateError> {
        self.out
            .write_all(bytes)
            .map_err(|source| GenerateError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Writes one record; `line` must already end with `\n`.
    pub fn record(&mut self, line: &str) -> Result<(), GenerateError> {
        self.rows += 1;
        self.raw(line.as_bytes())
    }

    /// Flushes and closes the file, returning its path.
    pub fn finish(mut self) -> Result<PathBuf, GenerateError> {
        self.out.flush().map_err(|source| GenerateError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.path)
    }
}

struct ParquetFile {
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    rows: usize,
}

impl ParquetFile {
    fn create(path: PathBuf, schema: Schema) -> Result<Self, GenerateError> {
        let schema = Arc::new(schema);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(PARQUET_BATCH))
            .build();
        let file = create(&path)?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
            GenerateError::Parquet {
                path: path.clone(),
                source,
            }
        })?;
        Ok(ParquetFile {
            path,
            schema,
            writer,
            rows: 0,
        })
    }

    fn write(&mut self, columns: Vec<ArrayRef>) -> Result<(), GenerateError> {
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|source| {
            GenerateError::Arrow {
                path: self.path.clone(),
                source,
            }
        })?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        let path = &self.path;
        self.writer
            .write(&batch)
            .map_err(|source| GenerateError::Parquet {
                path: path.clone(),
                source,
            })?;
        // One row group per batch keeps memory flat and readers parallel.
        self.writer
            .flush()
            .map_err(|source| GenerateError::Parquet {
                path: path.clone(),
                source,
            })
    }

    fn finish(self) -> Result<(PathBuf, usize), GenerateError> {
        let ParquetFile {
            path, writer, rows, ..
        } = self;
        writer.close().map_err(|source| GenerateError::Parquet {
            path: path.clone(),
            source,
        })?;
        Ok((path, rows))
    }
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Writer for `shop_orders.parquet`.
pub struct ShopSink {
    file: ParquetFile,
    order_id: StringBuilder,
    email: StringBuilder,
    name: StringBuilder,
    phone: StringBuilder,
    ordered_at: TimestampMicrosecondBuilder,
    total: Float64Builder,
    currency: StringBuilder,
    status: StringBuilder,
    items: Int32Builder,
    pending: usize,
}

impl ShopSink {
    /// The Arrow schema of `shop_orders.parquet`.
    pub fn schema() -> Schema {
        Schema::new(vec![
            Field::new("order_id", DataType::Utf8, false),
            Field::new("customer_email", DataType::Utf8, false),
            Field::new("customer_name", DataType::Utf8, false),
            Field::new("phone", DataType::Utf8, true),
            Field::new("ordered_at", utc_micros(), false),
            Field::new("total", DataType::Float64, false),
            Field::new("currency", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("items", DataType::Int32, false),
        ])
    }

    pub fn create(path: PathBuf) -> Result<Self, GenerateError> {
        Ok(ShopSink {
            file: ParquetFile::create(path, Self::schema())?,
            order_id: StringBuilder::new(),
            email: StringBuilder::new(),
            name: StringBuilder::new(),
            phone: StringBuilder::new(),
            ordered_at: TimestampMicrosecondBuilder::new(),
            total: Float64Builder::new(),
            currency: StringBuilder::new(),
            status: StringBuilder::new(),
            items: Int32Builder::new(),
            pending: 0,
        })
    }

    pub fn push(&mut self, id: &str, r: &ShopRow) -> Result<(), GenerateError> {
        self.order_id.append_value(id);
        self.email.append_value(&r.email);
        self.name.append_value(&r.name);
        self.phone.append_option(r.phone.as_deref());
        self.ordered_at.append_value(r.ts * 1_000_000);
        self.total.append_value(r.total);
        self.currency.append_value(r.currency);
        self.status.append_value(r.status);
        self.items.append_value(r.items);
        self.pending += 1;
        if self.pending >= PARQUET_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), GenerateError> {
        self.pending = 0;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.order_id.finish()),
            Arc::new(self.email.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.phone.finish()),
            Arc::new(self.ordered_at.finish().with_timezone("UTC")),
            Arc::new(self.total.finish()),
            Arc::new(self.currency.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.items.finish()),
        ];
        self.file.write(cols)
    }

    /// Writes the last partial batch and the Parquet footer: `(path, rows)`.
    pub fn finish(mut self) -> Result<(PathBuf, usize), GenerateError> {
        self.flush()?;
        self.file.finish()
    }
}

/// Writer for `pos_orders.parquet`.
pub struct PosSink {
    file: ParquetFile,
    receipt_id: StringBuilder,
    store_id: StringBuilder,
    loyalty_id: StringBuilder,
    phone: StringBuilder,
    purchased_at: TimestampMicrosecondBuilder,
    total: Float64Builder,
    items: Int32Builder,
    pending: usize,
}

impl PosSink {
    /// The Arrow schema of `pos_orders.parquet`.
    pub fn schema() -> Schema {
        Schema::new(vec![
            Field::new("receipt_id", DataType::Utf8, false),
            Field::new("store_id", DataType::Utf8, false),
            Field::new("loyalty_id", DataType::Utf8, true),
            Field::new("phone", DataType::Utf8, true),
            Field::new("purchased_at", utc_micros(), false),
            Field::new("total", DataType::Float64, false),
            Field::new("items", DataType::Int32, false),
        ])
    }

    pub fn create(path: PathBuf) -> Result<Self, GenerateError> {
        Ok(PosSink {
            file: ParquetFile::create(path, Self::schema())?,
            receipt_id: StringBuilder::new(),
            store_id: StringBuilder::new(),
            loyalty_id: StringBuilder::new(),
            phone: StringBuilder::new(),
            purchased_at: TimestampMicrosecondBuilder::new(),
            total: Float64Builder::new(),
            items: Int32Builder::new(),
            pending: 0,
        })
    }

    pub fn push(&mut self, id: &str, store_id: &str, r: &PosRow) -> Result<(), GenerateError> {
        self.receipt_id.append_value(id);
        self.store_id.append_value(store_id);
        self.loyalty_id.append_option(r.loyalty_id.as_deref());
        self.phone.append_option(r.phone.as_deref());
        self.purchased_at.append_value(r.ts * 1_000_000);
        self.total.append_value(r.total);
        self.items.append_value(r.items);
        self.pending += 1;
        if self.pending >= PARQUET_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), GenerateError> {
        self.pending = 0;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.receipt_id.finish()),
            Arc::new(self.store_id.finish()),
            Arc::new(self.loyalty_id.finish()),
            Arc::new(self.phone.finish()),
            Arc::new(self.purchased_at.finish().with_timezone("UTC")),
            Arc::new(self.total.finish()),
            Arc::new(self.items.finish()),
        ];
        self.file.write(cols)
    }

    /// Writes the last partial batch and the Parquet footer: `(path, rows)`.
    pub fn finish(mut self) -> Result<(PathBuf, usize), GenerateError> {
        self.flush()?;
        self.file.finish()
    }
}
