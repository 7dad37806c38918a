//! Durable writes on the local file system: the object store managed tables use.
//!
//! object_store's `LocalFileSystem` writes a file through a temporary file and a rename,
//! but never fsyncs, so after a power loss or an OS crash an acknowledged commit could be
//! missing, or a Delta log entry could name a data file that never reached the disk.
//! [`SyncedStore`] wraps it and fsyncs every file it writes, and the directories that
//! name it, before the write returns. Delta writes the data files before the log entry
//! that adds them, so each is on disk before anything refers to it, and a commit is on
//! disk before the write that made it is acknowledged.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// The local file system, with every write fsynced before it returns.
#[derive(Debug)]
pub struct SyncedStore {
    inner: Arc<LocalFileSystem>,
}

impl SyncedStore {
    pub fn new() -> Self {
        SyncedStore {
            inner: Arc::new(LocalFileSystem::new()),
        }
    }

    /// Make `location` durable: the file, its directory and the one above (which names
    /// the directory when the write created it).
    async fn sync(&self, location: &Path) -> Result<()> {
        let path = self.inner.path_to_filesystem(location)?;
        sync_path(path).await
    }
}

async fn sync_path(path: PathBuf) -> Result<()> {
    let synced = path.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::File::open(&synced)?.sync_all()?;
        for dir in synced.ancestors().skip(1).take(2) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(|e| io_error(&path, std::io::Error::other(e)))?
    .map_err(|e| io_error(&path, e))
}

fn io_error(path: &std::path::Path, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "SyncedStore",
        source: format!("cannot fsync {}: {e}", path.display()).into(),
    }
}

impl fmt::Display for SyncedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SyncedStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for SyncedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SyncedUpload {
            inner,
            path: self.inner.path_to_filesystem(location)?,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await?;
        self.sync(to).await
    }
}

/// A multipart write, fsynced when it completes.
#[derive(Debug)]
struct SyncedUpload {
    inner: Box<dyn MultipartUpload>,
    path: PathBuf,
}

#[async_trait]
impl MultipartUpload for SyncedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.inner.complete().await?;
        sync_path(self.path.clone()).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, PutMode, WriteMultipart};

    use super::*;
    use crate::storage::ManagedTable;

    fn location(dir: &std::path::Path, name: &str) -> Path {
        Path::from_absolute_path(dir.join(name)).expect("path")
    }

    #[tokio::test]
    async fn writes_keep_the_local_file_system_semantics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SyncedStore::new();
        let log = location(dir.path(), "_delta_log/00000000000000000000.json");
        let create = || PutOptions::from(PutMode::Create);
        store
            .put_opts(&log, PutPayload::from_static(b"first"), create())
            .await
            .expect("create");
        // A Delta commit is a create: a second writer of the same version must lose.
        let second = store
            .put_opts(&log, PutPayload::from_static(b"second"), create())
            .await;
        assert!(
            matches!(second, Err(object_store::Error::AlreadyExists { .. })),
            "{second:?}"
        );
        let big = location(dir.path(), "part-0.parquet");
        let mut upload = WriteMultipart::new(store.put_multipart(&big).await.expect("multipart"));
        upload.write(&[7u8; 100_000]);
        upload.finish().await.expect("complete");
        let read = store
            .get(&big)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(read.len(), 100_000);
        assert_eq!(
            store
                .get(&log)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes"),
            Bytes::from_static(b"first")
        );
    }

    #[tokio::test]
    async fn managed_tables_write_through_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new(
                "x",
                datafusion::arrow::datatypes::DataType::Int64,
                true,
            ),
        ]));
        for table in [
            ManagedTable::create("t", dir.path(), schema)
                .await
                .expect("create"),
            ManagedTable::open("t", dir.path()).await.expect("open"),
        ] {
            let delta = table.state.table.lock().await;
            let store = delta.log_store().root_object_store(None).to_string();
            assert!(store.contains("SyncedStore"), "{store}");
        }
    }
}
