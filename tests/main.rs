//! Integration tests: one binary (link time on a 2-core machine), a real `tessera`
//! server process on loopback per test, and real clients.

mod common;

mod activation;
mod auth;
mod clients;
mod collect;
mod copy;
mod demo;
mod erasure;
mod identity;
mod incremental;
mod limits;
mod matching;
mod matview;
mod model;
mod persistence;
mod privacy;
mod psql;
mod reflection;
mod resident;
mod sql;
mod transactions;
