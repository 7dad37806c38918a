//! The webhook destinations of a data directory: `<data dir>/activate/destinations.json`
//! (a [`file`]), listed in `tessera.destinations`.
//!
//! A destination's signing secret is never stored: it is derived from the installation's
//! key (`pseudonym.key`) and a random id kept with the destination, so the file holds
//! nothing a receiver would accept, and a destination created again under the same name
//! gets a new secret and starts its deliveries afresh.

use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::arrow::array::{RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use super::NewDestination;
use crate::engine::error::{EngineError, Result};
use crate::system::{file, register_system_table, SnapshotTable};

const FILE: &str = "destinations.json";
const FORMAT_VERSION: u32 = 1;
const NOUN: &str = "destination";
/// What every signing secret starts with, so secret scanners and people can tell one.
pub const SECRET_PREFIX: &str = "whsec_";

/// A destination as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub name: String,
    pub segment: String,
    pub url: String,
    pub purpose: String,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// Random (hex): tells this destination from an earlier one of the same name, and
    /// its secret from theirs.
    pub id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct DestinationsFile {
    version: u32,
    destinations: Vec<Destination>,
}

/// The destinations, and the key their secrets derive from.
#[derive(Debug)]
pub struct Destinations {
    path: std::path::PathBuf,
    /// The stored list; its lock also serialises changes.
    list: Mutex<Vec<Destination>>,
    table: Arc<SnapshotTable>,
    key: [u8; 32],
}

impl Destinations {
    /// Load the destinations of `data_dir` and register `tessera.destinations`.
    pub fn open(ctx: &SessionContext, data_dir: &std::path::Path, key: [u8; 32]) -> Result<Self> {
        let path = data_dir.join("activate").join(FILE);
        let list = match file::load::<DestinationsFile>(&path)? {
            Some(f) if f.version != FORMAT_VERSION => {
                return Err(file::corrupt(
                    &path,
                    format!("unknown version {}", f.version),
                ))
            }
            Some(f) => f.destinations,
            None => vec![],
        };
        let table = Arc::new(SnapshotTable::new(Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("segment", DataType::Utf8, false),
            Field::new("url", DataType::Utf8, false),
            Field::new("purpose", DataType::Utf8, false),
            Field::new(
                "created_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]))));
        register_system_table(ctx, "destinations", table.clone())?;
        let store = Destinations {
            path,
            list: Mutex::new(vec![]),
            table,
            key,
        };
        store.publish(&list)?;
        *store.lock() = list;
        Ok(store)
    }

    /// Store a new destination (its URL already checked); returns it.
    pub fn create(&self, new: NewDestination, created_at: i64) -> Result<Destination> {
        let mut list = self.lock();
        if list.iter().any(|d| d.name == new.name) {
            return Err(EngineError::DuplicateObject {
                kind: NOUN,
                name: new.name,
            });
        }
        let id: [u8; 16] = rand::random();
        let destination = Destination {
            name: new.name,
            segment: new.segment,
            url: new.url,
            purpose: new.purpose,
            created_at,
            id: super::hex(&id),
        };
        let mut next = list.clone();
        next.push(destination.clone());
        self.save(&next)?;
        self.publish(&next)?;
        *list = next;
        Ok(destination)
    }

    /// Remove destination `name`; `None` when there was none (and `if_exists`).
    pub fn remove(&self, name: &str, if_exists: bool) -> Result<Option<Destination>> {
        let mut list = self.lock();
        let Some(gone) = list.iter().find(|d| d.name == name).cloned() else {
            return if if_exists {
                Ok(None)
            } else {
                Err(EngineError::UndefinedObject {
                    kind: NOUN,
                    name: name.to_string(),
                })
            };
        };
        let next: Vec<Destination> = list.iter().filter(|d| d.name != name).cloned().collect();
        self.save(&next)?;
        self.publish(&next)?;
        *list = next;
        Ok(Some(gone))
    }

    pub fn list(&self) -> Vec<Destination> {
        self.lock().clone()
    }

    /// The names of the destinations of `segment`.
    pub fn of_segment(&self, segment: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|d| d.segment == segment)
            .map(|d| d.name.clone())
            .collect()
    }

    /// The secret `destination`'s requests are signed with.
    pub fn secret(&self, destination: &Destination) -> String {
        let mac = crate::auth::scram::hmac(
            &self.key,
            format!("tessera destination secret\0{}", destination.id).as_bytes(),
        );
        format!("{SECRET_PREFIX}{}", super::hex(&mac))
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Destination>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, list: &[Destination]) -> Result<()> {
        let contents = DestinationsFile {
            version: FORMAT_VERSION,
            destinations: list.to_vec(),
        };
        file::save(&self.path, &contents)
    }

    /// Make `list` what `tessera.destinations` shows (with the list's lock held).
    fn publish(&self, list: &[Destination]) -> Result<()> {
        let text = |f: fn(&Destination) -> String| -> StringArray {
            list.iter().map(|d| Some(f(d))).collect()
        };
        let batch = RecordBatch::try_new(
            self.table.schema_ref(),
            vec![
                Arc::new(text(|d| d.name.clone())),
                Arc::new(text(|d| d.segment.clone())),
                Arc::new(text(|d| super::redacted_url(&d.url))),
                Arc::new(text(|d| d.purpose.clone())),
                Arc::new(
                    list.iter()
                        .map(|d| Some(d.created_at))
                        .collect::<TimestampMicrosecondArray>()
                        .with_timezone("UTC"),
                ),
            ],
        )
        .map_err(|e| EngineError::storage("destinations", e))?;
        self.table.set(batch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path, key: [u8; 32]) -> Destinations {
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new()
                .with_default_catalog_and_schema(crate::engine::DATABASE, "public"),
        );
        crate::system::SystemTables::register(&ctx).expect("system schema");
        Destinations::open(&ctx, dir, key).expect("open")
    }

    fn new(name: &str) -> NewDestination {
        NewDestination {
            name: name.into(),
            segment: "vip".into(),
            url: "http://127.0.0.1:9/hook".into(),
            purpose: "email_marketing".into(),
        }
    }

    #[test]
    fn destinations_survive_reopening_and_secrets_are_derived_not_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), [7; 32]);
        let crm = store.create(new("crm"), 1).expect("create");
        store.create(new("ads"), 2).expect("create");
        assert!(matches!(
            store.create(new("crm"), 3),
            Err(EngineError::DuplicateObject { .. })
        ));
        let secret = store.secret(&crm);
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == SECRET_PREFIX.len() + 64);
        let on_disk =
            std::fs::read_to_string(dir.path().join("activate").join(FILE)).expect("file");
        assert!(on_disk.contains(&crm.id) && !on_disk.contains(&secret[SECRET_PREFIX.len()..]));

        let store = open(dir.path(), [7; 32]);
        assert_eq!(store.list().len(), 2);
        assert_eq!(
            store.secret(&store.list()[0]),
            secret,
            "the same after a restart"
        );
        assert_eq!(store.of_segment("vip"), ["crm", "ads"]);
        let gone = store.remove("crm", false).expect("drop");
        assert_eq!(gone, Some(crm.clone()));
        assert_eq!(store.remove("crm", true).expect("if exists"), None);
        assert!(matches!(
            store.remove("crm", false),
            Err(EngineError::UndefinedObject { .. })
        ));
        let again = store.create(new("crm"), 4).expect("create again");
        assert_ne!(
            store.secret(&again),
            secret,
            "a new destination, a new secret"
        );
        let other_installation = open(tempfile::tempdir().expect("tempdir").path(), [8; 32]);
        assert_ne!(other_installation.secret(&crm), secret);
    }
}
