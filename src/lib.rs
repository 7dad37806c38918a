//! tessera: a Customer Data Platform engine served over the PostgreSQL wire protocol.
//!
//! - [`auth`] keeps roles (`roles.json`), their grants and SCRAM verifiers;
//! - [`engine`] owns the DataFusion session and the persistent catalog, and runs the
//!   statements DataFusion cannot (durable DDL and DML, COPY);
//! - [`storage`] keeps managed tables as Delta Lake tables in the data directory;
//! - [`wire`] is the pgwire endpoint built on datafusion-postgres, and [`server`] the
//!   accept loop;
//! - [`pg`] makes the session look like PostgreSQL 16 to clients;
//! - [`identity`] resolves identities (`resolve_identities`, `explain_identity`);
//! - [`system`] holds the `tessera.*` system tables;
//! - [`collect`] receives events over HTTP (Segment's tracking API) into `tessera.events`;
//! - [`activate`] sends segment changes to webhooks, signed, with retries;
//! - [`demo`] generates the messy multi-source demo dataset.

pub mod access;
pub mod activate;
pub mod auth;
pub mod collect;
pub mod demo;
pub mod engine;
pub mod identity;
pub mod pg;
pub mod server;
pub mod storage;
pub mod system;
pub mod wire;

/// Install the process-wide rustls crypto provider (two are compiled into this tree, so
/// rustls cannot pick one by itself).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
