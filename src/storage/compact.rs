//! Compaction: merging a table's small data files into larger ones.
//!
//! A table appended to in small commits (`tessera.events` under group commit) gains a
//! data file per commit, and every later commit and scan pays for each file (the Delta
//! log replay reads every file's statistics). A compaction rewrites the small files as
//! a few large ones in one commit that changes no rows.
//!
//! It runs beside appends: it reads the files of the latest version without the write
//! lock, and its commit, which only removes files it read and adds their merge, does not
//! conflict with appends committed meanwhile (Delta's conflict check lets them through).
//! It never runs beside writes that remove files (see `TableState::rewrite`).

use std::num::NonZeroU64;

use deltalake::operations::optimize::OptimizeType;

use super::{write_session, writer_properties, ManagedTable};
use crate::engine::error::{EngineError, Result};

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    pub files_removed: u64,
    pub files_added: u64,
}

impl ManagedTable {
    /// Merge the data files smaller than `target_bytes` into files of about that size, in
    /// one commit (none when there is nothing to merge).
    pub async fn compact(&self, target_bytes: u64) -> Result<Compaction> {
        let state = self.state.clone();
        let name = state.name.clone();
        tokio::spawn(async move {
            let _rewrite = state.rewrite.lock().await;
            let latest = state.table.lock().await.clone();
            let storage = |e: deltalake::DeltaTableError| EngineError::storage(&state.name, e);
            let target = NonZeroU64::new(target_bytes.max(1)).unwrap_or(NonZeroU64::MIN);
            let optimized = latest
                .optimize()
                .with_type(OptimizeType::Compact)
                .with_target_size(target)
                .with_writer_properties(writer_properties())
                .with_session_state(write_session()?)
                .await
                .map_err(storage);
            let mut guard = state.table.lock().await;
            let (table, metrics) = match optimized {
                Ok(done) => done,
                Err(e) => {
                    // It may have committed before a later step failed.
                    state.reload(&mut guard).await;
                    return Err(e);
                }
            };
            // Appends may have committed after it: keep whichever version is newer.
            if metrics.num_files_removed > 0 && table.version() > guard.version() {
                if let Err(e) = state.install(&mut guard, table).await {
                    state.reload(&mut guard).await;
                    return Err(e);
                }
            }
            Ok(Compaction {
                files_removed: metrics.num_files_removed,
                files_added: metrics.num_files_added,
            })
        })
        .await
        .map_err(|e| EngineError::storage(&name, format!("compaction task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::storage::tests::data_files;

    fn batch(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let values: Int64Array = (from..from + n).collect();
        RecordBatch::try_new(schema, vec![Arc::new(values)]).expect("batch")
    }

    async fn sum_and_count(table: &ManagedTable) -> (i64, i64) {
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(table.clone()))
            .expect("register");
        let rows = ctx
            .sql("SELECT sum(x), count(*) FROM t")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let column = |i: usize| {
            rows[0]
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("bigint")
                .value(0)
        };
        (column(0), column(1))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_merges_files_while_appends_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = ManagedTable::create("t", dir.path(), batch(0, 0).schema())
            .await
            .expect("create");
        for i in 0..20 {
            table.append(vec![batch(i * 10, 10)]).await.expect("append");
        }
        assert_eq!(data_files(dir.path()), 20);
        // Appends committed while the compaction runs are kept, whichever commits first.
        let appends = {
            let table = table.clone();
            tokio::spawn(async move {
                for i in 20..40 {
                    table.append(vec![batch(i * 10, 10)]).await.expect("append");
                }
            })
        };
        let done = table.compact(64 << 20).await.expect("compact");
        appends.await.expect("appends");
        assert!(
            done.files_removed >= 20 && done.files_added >= 1,
            "{done:?}"
        );
        assert_eq!(sum_and_count(&table).await, ((0..400).sum(), 400));
        // A second compaction merges what the first left and the appends added.
        let again = table.compact(64 << 20).await.expect("compact");
        assert!(
            again.files_removed >= 2 && again.files_added == 1,
            "{again:?}"
        );
        assert_eq!(sum_and_count(&table).await, ((0..400).sum(), 400));
        // Reopened from disk, the table reads the same.
        let reopened = ManagedTable::open("t", dir.path()).await.expect("open");
        assert_eq!(sum_and_count(&reopened).await, ((0..400).sum(), 400));
        assert_eq!(
            table
                .compact(64 << 20)
                .await
                .expect("compact")
                .files_removed,
            0
        );
    }
}
