//! Errors of the engine, each naming the object it is about.
//!
//! SQLSTATE codes are not decided here: the wire layer maps these variants (and
//! DataFusion's own errors) to codes in one place, `wire::errors`.

use std::path::{Path, PathBuf};

use datafusion::error::DataFusionError;

use super::catalog::RelationKind;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("relation \"{0}\" does not exist")]
    UndefinedRelation(String),
    #[error("column \"{column}\" of relation \"{relation}\" does not exist{detail}")]
    UndefinedColumn {
        relation: String,
        column: String,
        /// Appended to the message, e.g. " (an edges relation has columns ...)".
        detail: String,
    },
    /// A function called with the wrong number of arguments.
    #[error("{0}")]
    BadCall(String),
    /// A function argument of the wrong kind.
    #[error("{0}")]
    BadArgument(String),
    #[error("relation \"{0}\" already exists")]
    DuplicateRelation(String),
    /// An object other than a relation (a write key) that already exists.
    #[error("{kind} \"{name}\" already exists")]
    DuplicateObject { kind: &'static str, name: String },
    /// An object other than a relation (a write key) that does not exist.
    #[error("{kind} \"{name}\" does not exist")]
    UndefinedObject { kind: &'static str, name: String },
    #[error("\"{name}\" is not a {expected}")]
    WrongObjectType {
        name: String,
        expected: &'static str,
        /// What the object is, when the user meant another statement (`DROP TABLE` on a
        /// view): the hint names the statement for it.
        actual: Option<RelationKind>,
    },
    #[error("cannot change materialized view \"{0}\"")]
    ReadOnlyMaterializedView(String),
    #[error("cannot change system table \"tessera.{0}\"")]
    ReadOnlySystemTable(String),
    #[error("materialized view \"{0}\" has not been populated")]
    NotPopulated(String),
    /// A refresh that failed; the materialized view keeps its previous contents.
    #[error("refresh of materialized view \"{name}\" failed: {source}")]
    Refresh {
        name: String,
        source: Box<EngineError>,
    },
    /// A bad value for a statement's option (`WITH (refresh_interval = 'soon')`).
    #[error("{0}")]
    InvalidParameter(String),
    #[error("cannot drop {kind} \"{name}\" because other objects depend on it")]
    DependentObjects {
        kind: &'static str,
        name: String,
        dependents: Vec<String>,
    },
    /// `CREATE EXTERNAL TABLE` over a location outside the allowed roots.
    #[error("location \"{location}\" is outside the locations external tables may read ({roots}); start the server with --allow-location DIR (or TESSERA_ALLOW_LOCATIONS) to allow it")]
    LocationNotAllowed { location: String, roots: String },
    /// A transaction block whose commit would overwrite another session's change.
    #[error("{0}")]
    SerializationFailure(String),
    #[error("savepoint \"{0}\" does not exist")]
    NoSavepoint(String),
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("{0} is not supported")]
    NotSupported(String),
    #[error("{0}")]
    BadCopyData(String),
    /// A value longer than its column's declared `varchar(n)` or `char(n)` (the message
    /// is matched in `storage::limits::too_long`).
    #[error("value too long for type {type_name}{context}")]
    ValueTooLong {
        type_name: String,
        /// Where, when known: ` (COPY t, line 3, column name)`.
        context: String,
    },
    #[error("catalog file {path} is unreadable: {reason}")]
    CorruptCatalog { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("source \"{name}\" ({location}): {source}")]
    Source {
        name: String,
        location: String,
        source: DataFusionError,
    },
    #[error("storage error on table \"{table}\": {reason}")]
    Storage { table: String, reason: String },
    /// Role statements (`crate::auth`).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl EngineError {
    /// PostgreSQL's hint for the error, if it has one.
    pub fn hint(&self) -> Option<String> {
        match self {
            EngineError::WrongObjectType {
                actual: Some(kind), ..
            } => Some(format!(
                "Use DROP {} to remove a {}.",
                kind.keyword(),
                kind.noun()
            )),
            EngineError::NotPopulated(_) => {
                Some("Use the REFRESH MATERIALIZED VIEW command.".into())
            }
            EngineError::Refresh { source, .. } => source.hint(),
            _ => None,
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn storage(table: &str, reason: impl std::fmt::Display) -> Self {
        EngineError::Storage {
            table: table.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl From<EngineError> for DataFusionError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
