//! Activation: telling other systems (email automation, ads, CRM) the moment someone
//! enters or leaves a segment.
//!
//! A destination is a webhook of one segment, created in SQL:
//! `CREATE DESTINATION crm FOR SEGMENT segment_high_value URL 'https://...' PURPOSE
//! 'email_marketing'`, and listed in `tessera.destinations`. After each refresh of the
//! segment, its new changes (`tessera.segment_changes`) are POSTed to the URL as JSON
//! batches:
//!
//! - in order (segment version, then change key), at most [`deliver::BATCH`] per
//!   request, each change with a key that stays the same on every retry;
//! - signed: `X-Tessera-Signature: sha256=<hex HMAC-SHA256 of the body>`, under the
//!   destination's secret (shown once, by `CREATE DESTINATION`; see [`destinations`]);
//! - only about people whose consent allows the destination's purpose (as
//!   `consent_allows` answers at each attempt); the others are withheld;
//! - at least once: a batch is retried with exponential backoff until the receiver
//!   answers 2xx, and the destination's position moves on only then (see
//!   [`deliveries`]); each attempt is a row of `tessera.deliveries`.
//!
//! Every destination has its own task ([`spawn`], run by `tessera serve`): one that is
//! down holds up neither refreshes nor the other destinations; its changes wait.

pub mod deliver;
pub mod deliveries;
pub mod destinations;
pub mod statements;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use destinations::Destination;

use crate::engine::error::{EngineError, Result};
use crate::engine::Engine;

/// A destination as `CREATE DESTINATION` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDestination {
    pub name: String,
    pub segment: String,
    pub url: String,
    pub purpose: String,
}

/// The columns `CREATE DESTINATION` answers with (one row).
pub const CREATED_COLUMNS: [&str; 5] = ["name", "segment", "url", "purpose", "signing_secret"];

/// The destinations, their deliveries, and the signal their tasks wait on.
#[derive(Debug)]
pub struct Activation {
    destinations: destinations::Destinations,
    deliveries: deliveries::Deliveries,
    /// Bumped when a materialised view is refreshed or a destination comes or goes.
    wake: watch::Sender<u64>,
}

impl Activation {
    /// Open both in `data_dir` and register `tessera.destinations` and
    /// `tessera.deliveries`; secrets derive from `key`.
    pub async fn open(
        ctx: &SessionContext,
        data_dir: &std::path::Path,
        key: [u8; 32],
    ) -> Result<Self> {
        Ok(Activation {
            destinations: destinations::Destinations::open(ctx, data_dir, key)?,
            deliveries: deliveries::Deliveries::open(ctx, data_dir).await?,
            wake: watch::channel(0).0,
        })
    }

    pub fn destinations(&self) -> &destinations::Destinations {
        &self.destinations
    }

    pub fn deliveries(&self) -> &deliveries::Deliveries {
        &self.deliveries
    }

    /// Something the destinations' tasks act on changed: have them look.
    pub fn changed(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }
}

/// Check a destination's URL: absolute, `http` or `https`, with a host.
pub fn check_url(text: &str) -> Result<()> {
    let bad = |why: &str| {
        EngineError::InvalidParameter(format!(
            "destination URL '{}' {why}",
            redacted_url(text).replace('\'', "''")
        ))
    };
    let url = url::Url::parse(text).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("is not http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    Ok(())
}

/// `url` with any password in it replaced by `***`, as it is shown and logged.
pub fn redacted_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_string(),
    }
}

/// What the audit log keeps of a `CREATE DESTINATION` whose URL holds a password: the
/// statement with the password replaced by `***` (`None` for any other statement).
pub fn audit_text(statement: &str) -> Option<String> {
    let head: String = statement.trim_start().chars().take(40).collect();
    if !head.to_ascii_lowercase().contains("destination") || !statement.contains('@') {
        return None;
    }
    let Ok(Some(crate::engine::Command::CreateDestination(d))) =
        crate::engine::sql::classify(statement)
    else {
        return None;
    };
    let url = redacted_url(&d.url);
    if url == d.url {
        return None;
    }
    let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    Some(format!(
        "CREATE DESTINATION {} FOR SEGMENT {} URL {} PURPOSE {}",
        ident(&d.name),
        ident(&d.segment),
        literal(&url),
        literal(&d.purpose)
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Start delivering: a task per destination, started and stopped as destinations are
/// created and dropped. Runs until the returned task is aborted (which stops them all).
pub fn spawn(engine: &Arc<Engine>) -> JoinHandle<()> {
    let weak = Arc::downgrade(engine);
    let mut wake = engine.activation().subscribe();
    tokio::spawn(async move {
        let mut workers = Workers::default();
        loop {
            let Some(engine) = weak.upgrade() else {
                return;
            };
            let list = engine.activation().destinations().list();
            workers.sync(list, |d| {
                let wake = engine.activation().subscribe();
                tokio::spawn(crate::access::as_system(deliver::run(
                    weak.clone(),
                    d,
                    wake,
                )))
            });
            drop(engine);
            if wake.changed().await.is_err() {
                return;
            }
        }
    })
}

/// The destinations' tasks, by destination id; aborted when dropped.
#[derive(Default)]
struct Workers(HashMap<String, JoinHandle<()>>);

impl Workers {
    /// Stop the tasks of destinations no longer in `list`; start those missing.
    fn sync(&mut self, list: Vec<Destination>, start: impl Fn(Destination) -> JoinHandle<()>) {
        self.0.retain(|id, task| {
            let keep = list.iter().any(|d| &d.id == id) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for d in list {
            if !self.0.contains_key(&d.id) {
                self.0.insert(d.id.clone(), start(d));
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_hidden() {
        assert!(check_url("https://hooks.example.com/tessera?x=1").is_ok());
        assert!(check_url("http://127.0.0.1:8080/h").is_ok());
        for bad in ["ftp://x/y", "hooks.example.com", "", "http://"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            redacted_url("https://user:s3cret@h.example/x"),
            "https://user:***@h.example/x"
        );
        let e = check_url("ftp://u:s3cret@h/")
            .expect_err("scheme")
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        let create = "create destination D for segment vip url 'https://u:s3cret@h/x' purpose 'p'";
        assert_eq!(
            crate::access::erasure::audit_text(create),
            "CREATE DESTINATION \"d\" FOR SEGMENT \"vip\" URL 'https://u:***@h/x' PURPOSE 'p'"
        );
        let plain = "CREATE DESTINATION d FOR SEGMENT vip URL 'https://h/x' PURPOSE 'p'";
        assert_eq!(crate::access::erasure::audit_text(plain), plain);
    }
}
