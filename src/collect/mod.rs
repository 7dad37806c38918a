//! Real-time event collection: Segment's HTTP tracking API, so analytics.js, the
//! Segment and RudderStack SDKs and curl can send events to tessera.
//!
//! - [`keys`] holds the write keys (`CREATE WRITE KEY`, `DROP WRITE KEY`,
//!   `tessera.write_keys`), kept as SHA-256 hashes in the data directory;
//! - [`statements`] reads those two statements for the engine;
//! - [`event`] reads and checks request bodies into [`event::Event`]s;
//! - [`log`] stores them in `tessera.events` (a Delta table), one commit per group of
//!   concurrent requests, each event once per source and message id;
//! - [`http`] is the axum server (`tessera serve --http ADDR`).
//!
//! The engine owns the [`Collector`] (its statements and system tables live in the SQL
//! session); the HTTP server gets it from there.

pub mod event;
pub mod http;
pub mod keys;
pub mod log;
pub mod statements;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::prelude::SessionContext;

use crate::engine::error::Result;

/// The write keys and the event store of one data directory.
#[derive(Debug)]
pub struct Collector {
    keys: keys::WriteKeys,
    events: log::EventLog,
}

impl Collector {
    /// Open both in `data_dir` and register `tessera.write_keys` and `tessera.events`.
    /// Events about people on the `suppression` list are dropped as they arrive.
    pub async fn open(
        ctx: &SessionContext,
        data_dir: &Path,
        suppression: Arc<crate::access::erasure::Suppression>,
    ) -> Result<Self> {
        Ok(Collector {
            keys: keys::WriteKeys::open(ctx, data_dir)?,
            events: log::EventLog::open(ctx, data_dir, suppression).await?,
        })
    }

    pub fn keys(&self) -> &keys::WriteKeys {
        &self.keys
    }

    pub fn events(&self) -> &log::EventLog {
        &self.events
    }
}

/// Now, in microseconds since the Unix epoch.
fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
