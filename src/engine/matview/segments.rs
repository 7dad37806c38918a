//! Segments: materialised views created `WITH (segment = true)`, one row per member
//! (its `unified_id`). Every refresh of a segment compares the new members with the
//! stored ones and appends who entered and who left to `tessera.segment_changes`
//! (segment, unified_id, change, at, version), a Delta table under
//! `<data dir>/system/segment_changes`, so other systems can follow a segment
//! incrementally.
//!
//! The changes are committed before the segment's new result, tagged with the Delta
//! version that result will have. Should the server stop between the two commits, the
//! next refresh first deletes the changes tagged after the version of the segment's last
//! result (as its refresh state records it: other commits, such as a vacuum's, move the
//! table's version too), so each change is recorded once. Dropping a segment deletes
//! its changes.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;

use crate::engine::error::{EngineError, Result};
use crate::storage::ManagedTable;

/// The column holding a segment's members.
pub const MEMBER_COLUMN: &str = "unified_id";
const TABLE: &str = "segment_changes";

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("segment", DataType::Utf8, false),
        Field::new(MEMBER_COLUMN, DataType::Utf8, false),
        Field::new("change", DataType::Utf8, false),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("version", DataType::Int64, false),
    ]))
}

/// `tessera.segment_changes`.
#[derive(Debug, Clone)]
pub struct SegmentChanges {
    table: ManagedTable,
}

impl SegmentChanges {
    /// Open the table in the data directory (creating it on first start) and register it.
    pub async fn open(ctx: &SessionContext, data_dir: &Path) -> Result<Self> {
        let table = crate::system::delta::open(ctx, data_dir, TABLE, schema()).await?;
        Ok(SegmentChanges { table })
    }

    /// Record the difference between `old` and `new` members of `segment`, whose last
    /// result is version `reached` (`None`: none yet) and whose new result is about to
    /// become Delta version `version`; returns (entered, exited).
    #[allow(clippy::too_many_arguments)]
    pub async fn record(
        &self,
        ctx: &SessionContext,
        segment: &str,
        old: &HashSet<String>,
        new: &HashSet<String>,
        reached: Option<u64>,
        version: u64,
        at: i64,
    ) -> Result<(u64, u64)> {
        self.forget_after(ctx, segment, reached).await?;
        let mut entered: Vec<&str> = new.difference(old).map(String::as_str).collect();
        let mut exited: Vec<&str> = old.difference(new).map(String::as_str).collect();
        entered.sort_unstable();
        exited.sort_unstable();
        let counts = (entered.len() as u64, exited.len() as u64);
        let rows = entered.len() + exited.len();
        if rows == 0 {
            return Ok(counts);
        }
        let members: StringArray = entered.iter().chain(&exited).map(|m| Some(*m)).collect();
        let change: StringArray = std::iter::repeat_n(Some("entered"), entered.len())
            .chain(std::iter::repeat_n(Some("exited"), exited.len()))
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![segment; rows])),
            Arc::new(members),
            Arc::new(change),
            Arc::new(TimestampMicrosecondArray::from(vec![at; rows]).with_timezone("UTC")),
            Arc::new(Int64Array::from(vec![version as i64; rows])),
        ];
        let batch = RecordBatch::try_new(schema(), columns).map_err(DataFusionError::from)?;
        self.table.append(vec![batch]).await?;
        Ok(counts)
    }

    /// Delete every change of `segment` (when it is dropped).
    pub async fn forget(&self, ctx: &SessionContext, segment: &str) -> Result<()> {
        self.forget_after(ctx, segment, None).await
    }

    /// Delete the changes of `segment` tagged after version `reached` (all of them for
    /// `None`): a previous refresh recorded them and stopped before its result landed.
    async fn forget_after(
        &self,
        ctx: &SessionContext,
        segment: &str,
        reached: Option<u64>,
    ) -> Result<()> {
        let after = reached.map_or(-1, |v| v as i64);
        let unreached = col("segment")
            .eq(lit(segment))
            .and(col("version").gt(lit(after)));
        let left = ctx
            .read_table(Arc::new(self.table.clone()))?
            .filter(unreached.clone())?
            .count()
            .await?;
        if left > 0 {
            self.table.delete_where(unreached).await?;
        }
        Ok(())
    }
}

impl crate::engine::Engine {
    /// The version of segment `name`'s last result, as its refresh state records it:
    /// its changes up to this version are final (see the module's note). `None` for a
    /// view that is not populated (or not there).
    pub async fn segment_reached(&self, name: &str) -> Option<u64> {
        let catalog = self.catalog.lock().await;
        let state = catalog.get(name)?.refresh.as_ref()?;
        state.version.filter(|_| state.populated)
    }

    /// The version of view `name`'s last result, populated or not.
    pub(super) async fn last_result_version(&self, name: &str) -> Option<u64> {
        let catalog = self.catalog.lock().await;
        catalog.get(name)?.refresh.as_ref()?.version
    }
}

/// The members of a segment in `batches`: the distinct non-NULL values of their
/// `unified_id` column, as text.
pub fn members(batches: &[RecordBatch], segment: &str) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for b in batches {
        let Ok(index) = b.schema().index_of(MEMBER_COLUMN) else {
            return Err(missing_member_column(segment));
        };
        let text = cast(b.column(index), &DataType::Utf8).map_err(DataFusionError::from)?;
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| EngineError::storage(segment, "unified_id is not text"))?;
        out.extend(text.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

pub fn missing_member_column(segment: &str) -> EngineError {
    EngineError::UndefinedColumn {
        relation: segment.to_string(),
        column: MEMBER_COLUMN.to_string(),
        detail: " (a segment has one row per member, identified by its unified_id column)"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use datafusion::arrow::util::display::array_value_to_string;

    fn set(members: &[&str]) -> HashSet<String> {
        members.iter().map(|m| m.to_string()).collect()
    }

    #[tokio::test]
    async fn changes_for_a_version_never_reached_are_recorded_once() {
        crate::access::as_system(version_never_reached()).await
    }

    async fn version_never_reached() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path()).await.expect("open");
        let changes = &engine.matviews.segments;
        let ctx = &engine.ctx;
        let counts = changes
            .record(ctx, "s", &set(&[]), &set(&["a", "b"]), None, 1, 10)
            .await
            .expect("first");
        assert_eq!(counts, (2, 0));
        // Version 2 recorded, then the server stopped before the segment reached it;
        // the next refresh vacuumed first (two more commits), so it records version 4,
        // from other results, after deleting what the segment never reached.
        changes
            .record(ctx, "s", &set(&["a", "b"]), &set(&["a"]), Some(1), 2, 20)
            .await
            .expect("interrupted");
        changes
            .record(ctx, "other", &set(&[]), &set(&["z"]), None, 5, 20)
            .await
            .expect("another segment");
        let counts = changes
            .record(ctx, "s", &set(&["a", "b"]), &set(&["c"]), Some(1), 4, 30)
            .await
            .expect("again");
        assert_eq!(counts, (1, 2));
        let batches = ctx
            .sql(
                "SELECT segment || ' ' || unified_id || ' ' || change || ' ' || version || ' ' || \
                 CAST(at AS BIGINT) FROM tessera.segment_changes ORDER BY 1",
            )
            .await
            .expect("plan")
            .collect()
            .await
            .expect("query");
        let mut lines = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                lines.push(array_value_to_string(b.column(0), i).expect("text"));
            }
        }
        assert_eq!(
            lines,
            [
                "other z entered 5 20",
                "s a entered 1 10",
                "s a exited 4 30",
                "s b entered 1 10",
                "s b exited 4 30",
                "s c entered 4 30",
            ]
        );
    }
}
