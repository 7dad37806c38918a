//! Durable writes on the local file system: the object store managed tables use.
//!
//! object_store's `LocalFileSystem` writes a file through a temporary file and a rename,
//! but never fsyncs, so after a power loss or an OS crash an acknowledged commit could be
//! missing, or a Delta log entry could name a data file that never reached the disk.
//! [`SyncedStore`] wraps it: a `put` (how Delta writes its log) writes a staging file,
//! fsyncs it, then links or renames it into place and fsyncs the directories, so the file
//! is whole on disk before its name appears; other writes (multipart data files, copies,
//! renames) are fsynced before they return. Delta writes the data files before the log entry
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
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result, UploadPart,
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
        sync_dirs(&synced)
    })
    .await
    .map_err(|e| io_error(&path, std::io::Error::other(e)))?
    .map_err(|e| io_error(&path, e))
}

/// Write `payload` to `path` so that it is complete on disk before it appears there:
/// into a staging file beside it (named with `#`, which listings skip, as object_store's
/// own staging files are), fsynced, then linked (`create`: fails if `path` exists, which
/// makes a Delta commit atomic) or renamed into place, and the directories fsynced.
fn write_durably(path: &std::path::Path, payload: &PutPayload, create: bool) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .ok_or_else(|| io_error(path, std::io::Error::other("no parent directory")))?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!("#tessera-{:016x}", rand::random::<u64>()));
    let staging = PathBuf::from(staging);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging)?;
        for chunk in payload.iter() {
            file.write_all(chunk)?;
        }
        file.sync_all()
    })();
    let placed = written.and_then(|()| {
        if create {
            std::fs::hard_link(&staging, path)
        } else {
            std::fs::rename(&staging, path)
        }
    });
    if create || placed.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    match placed {
        Ok(()) => sync_dirs(path).map_err(|e| io_error(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(object_store::Error::AlreadyExists {
                path: path.display().to_string(),
                source: Box::new(e),
            })
        }
        Err(e) => Err(io_error(path, e)),
    }
}

/// fsync the directory of `path` and the one above (which names it if it is new).
fn sync_dirs(path: &std::path::Path) -> std::io::Result<()> {
    for dir in path.ancestors().skip(1).take(2) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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
        let create = match opts.mode {
            PutMode::Create => true,
            PutMode::Overwrite => false,
            // Not supported by the local file system: let it say so.
            PutMode::Update(_) => return self.inner.put_opts(location, payload, opts).await,
        };
        let path = self.inner.path_to_filesystem(location)?;
        let target = path.clone();
        tokio::task::spawn_blocking(move || write_durably(&target, &payload, create))
            .await
            .map_err(|e| io_error(&path, std::io::Error::other(e)))??;
        let meta = self.inner.head(location).await?;
        Ok(PutResult {
            e_tag: meta.e_tag,
            version: meta.version,
        })
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
    use object_store::{PutMode, WriteMultipart};

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
        // An overwrite replaces the contents; no staging file is left behind.
        let last = location(dir.path(), "_delta_log/_last_checkpoint");
        for body in [&b"v1"[..], &b"v2"[..]] {
            store
                .put(&last, PutPayload::from(body.to_vec()))
                .await
                .expect("put");
        }
        let read = store.get(&last).await.expect("get").bytes().await;
        assert_eq!(read.expect("bytes"), Bytes::from_static(b"v2"));
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("_delta_log"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["00000000000000000000.json", "_last_checkpoint"]);
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
