//! The persistent catalog: which relations exist and how to rebuild them.
//!
//! The catalog is one JSON file, `catalog.json`, in the data directory. Every change
//! rewrites it whole through a temporary file that is fsynced and renamed over the old
//! one (and the directory fsynced), so a crash at any point leaves either the old or the
//! new catalog, never a torn one. Entries are kept in creation order, which is also a
//! valid order to rebuild them in: a view can only refer to relations that existed when it
//! was created.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::EngineError;
pub use super::matview::RefreshState;

const CATALOG_FILE: &str = "catalog.json";
const FORMAT_VERSION: u32 = 1;

/// What kind of relation a catalog entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    /// A read-only source over files or an object store (`CREATE EXTERNAL TABLE`).
    External,
    /// A view (`CREATE VIEW`), stored as its SQL.
    View,
    /// A managed table stored as a Delta Lake table under the data directory.
    Table,
    /// A materialised view: its query, and its last result stored as a Delta Lake table
    /// under the data directory (see `engine::matview`).
    MaterializedView,
}

impl RelationKind {
    /// The word PostgreSQL uses for this kind in messages (`table "x" does not exist`).
    pub fn noun(self) -> &'static str {
        match self {
            RelationKind::External | RelationKind::Table => "table",
            RelationKind::View => "view",
            RelationKind::MaterializedView => "materialized view",
        }
    }

    /// Whether it is defined by a query over other relations (a view or a materialised
    /// view), so that it depends on them.
    pub fn is_view(self) -> bool {
        matches!(self, RelationKind::View | RelationKind::MaterializedView)
    }

    /// The keywords of its DDL (`DROP MATERIALIZED VIEW`).
    pub fn keyword(self) -> &'static str {
        match self {
            RelationKind::External | RelationKind::Table => "TABLE",
            RelationKind::View => "VIEW",
            RelationKind::MaterializedView => "MATERIALIZED VIEW",
        }
    }
}

/// One relation in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Normalised (unquoted identifiers lower-cased) relation name.
    pub name: String,
    pub kind: RelationKind,
    /// For external tables the `CREATE EXTERNAL TABLE` text as the user typed it (its
    /// name is replaced by `name` when it is rebuilt); for views the `CREATE VIEW`
    /// statement; for materialised views the `CREATE MATERIALIZED VIEW` statement
    /// (without `WITH [NO] DATA`); for managed tables empty.
    #[serde(default)]
    pub sql: String,
    /// For managed tables and materialised views: the Delta table directory, relative to
    /// the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Primary key columns declared at `CREATE TABLE` (reported to clients, not enforced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
    /// For materialised views: what the last refresh did and what it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshState>,
    /// Column comments (`COMMENT ON COLUMN`), by column name; `pii...` ones classify the
    /// column as personal data (see `access::classes`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub comments: BTreeMap<String, String>,
    /// For managed tables: the declared length of each `varchar(n)` and `char(n)`
    /// column, by column name (checked on every write, reported in `pg_attribute`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub text_limits: BTreeMap<String, crate::storage::TextLimit>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CatalogFile {
    version: u32,
    relations: Vec<Entry>,
}

/// The in-memory copy of the catalog file and the path it is saved to.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl Catalog {
    /// Load the catalog of `data_dir`, or start an empty one if there is none yet.
    pub fn load(data_dir: &Path) -> Result<Self, EngineError> {
        let path = data_dir.join(CATALOG_FILE);
        let entries = match fs::read(&path) {
            Ok(bytes) => {
                let file: CatalogFile =
                    serde_json::from_slice(&bytes).map_err(|e| EngineError::CorruptCatalog {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if file.version != FORMAT_VERSION {
                    return Err(EngineError::CorruptCatalog {
                        path,
                        reason: format!("unsupported catalog version {}", file.version),
                    });
                }
                file.relations
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(EngineError::io(&path, e)),
        };
        Ok(Catalog { path, entries })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Apply `change` to a copy of the entries and save it; the in-memory catalog only
    /// changes once the file is safely on disk.
    pub fn update(
        &mut self,
        change: impl FnOnce(&mut Vec<Entry>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let mut next = self.entries.clone();
        change(&mut next)?;
        write_atomically(
            &self.path,
            &CatalogFile {
                version: FORMAT_VERSION,
                relations: next.clone(),
            },
        )?;
        self.entries = next;
        Ok(())
    }
}

fn write_atomically(path: &Path, file: &CatalogFile) -> Result<(), EngineError> {
    let bytes = serde_json::to_vec_pretty(file).map_err(|e| EngineError::CorruptCatalog {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_file_atomically(path, &bytes, false)
}

/// Replace `path` by `bytes` so that a crash leaves the old or the new content, never a
/// torn file: write a temporary file, fsync it, rename it over `path`, fsync the
/// directory. `private` files (secrets: `roles.json`) are readable by their owner only.
pub fn write_file_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<(), EngineError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = File::create(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
    if private {
        restrict_to_owner(&f).map_err(|e| EngineError::io(&tmp, e))?;
    }
    f.write_all(bytes).map_err(|e| EngineError::io(&tmp, e))?;
    f.sync_all().map_err(|e| EngineError::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| EngineError::io(path, e))?;
    if let Some(dir) = path.parent() {
        // The rename is only durable once the directory entry is.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| EngineError::io(dir, e))?;
    }
    Ok(())
}

/// Mode 0600 (set on the open file, so a temporary file left by a crash is fixed too).
#[cfg(unix)]
fn restrict_to_owner(f: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_to_owner(_: &File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str) -> Entry {
        Entry {
            name: name.into(),
            kind: RelationKind::View,
            sql: format!("CREATE VIEW {name} AS SELECT 1"),
            location: None,
            primary_key: vec![],
            refresh: None,
            comments: Default::default(),
            text_limits: Default::default(),
        }
    }

    #[test]
    fn survives_reload_and_keeps_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Catalog::load(dir.path()).expect("load");
        c.update(|e| {
            e.push(view("b"));
            e.push(view("a"));
            Ok(())
        })
        .expect("update");
        let again = Catalog::load(dir.path()).expect("reload");
        let names: Vec<_> = again.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert!(!dir.path().join("catalog.json.tmp").exists());
    }

    #[test]
    fn failed_change_leaves_catalog_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Catalog::load(dir.path()).expect("load");
        c.update(|e| {
            e.push(view("a"));
            Ok(())
        })
        .expect("update");
        let err = c.update(|e| {
            e.clear();
            Err(EngineError::UndefinedRelation("x".into()))
        });
        assert!(err.is_err());
        assert_eq!(c.entries().len(), 1);
        assert_eq!(
            Catalog::load(dir.path()).expect("reload").entries().len(),
            1
        );
    }

    #[test]
    fn garbage_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("catalog.json"), b"{not json").expect("write");
        let err = Catalog::load(dir.path()).expect_err("must fail");
        assert!(err.to_string().contains("catalog.json"), "{err}");
    }
}
