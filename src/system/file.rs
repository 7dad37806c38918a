//! Small state files kept as JSON (write keys, webhook destinations): read once at
//! start-up and rewritten whole through a temporary file that is fsynced and renamed
//! into place (and the directory fsynced), so a crash leaves the old or the new contents.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::error::{EngineError, Result};

/// The contents of `path`, or `None` when there is no such file yet.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(path, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io(path, e)),
    }
}

/// Replace the contents of `path` by `value`; the file is readable by its owner only.
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| corrupt(path, e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let tmp = path.with_extension("json.tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_all()))
        .map_err(|e| EngineError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| EngineError::io(path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError::io(dir, e))
}

/// A state file that cannot be read back.
pub fn corrupt(path: &Path, reason: String) -> EngineError {
    EngineError::CorruptCatalog {
        path: path.to_path_buf(),
        reason,
    }
}
