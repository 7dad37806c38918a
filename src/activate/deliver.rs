//! A destination's task: read the segment's changes past its position, form batches,
//! withhold those about people without consent for its purpose, sign and POST each
//! batch until the receiver takes it, and record every attempt.
//!
//! The request: `POST <url>` with `Content-Type: application/json`,
//! `Idempotency-Key: <batch key>`, `X-Tessera-Destination: <name>`,
//! `X-Tessera-Attempt: <n>` and `X-Tessera-Signature: sha256=<hex>`, the HMAC-SHA256 of
//! the body under the destination's secret. The body:
//!
//! ```json
//! {"destination": "crm", "segment": "segment_high_value", "batch_key": "…",
//!  "sent_at": "2026-12-02T10:00:00.000000Z",
//!  "changes": [{"key": "…", "unified_id": "…", "change": "entered",
//!               "at": "2026-12-02T09:59:58.123456Z", "version": 4}]}
//! ```

use std::sync::Weak;
use std::time::{Duration, Instant};

use datafusion::arrow::array::Array;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::{as_int64_array, as_string_array};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{col, lit};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::deliveries::{Attempt, Cursor, Status};
use super::{hex, Destination};
use crate::engine::error::Result;
use crate::engine::Engine;

/// The most changes one request carries.
pub const BATCH: usize = 500;
/// How long a receiver has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after a failed attempt; each further failure doubles it...
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// ... up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How long a task waits after it could not read the changes or record a delivery.
const AFTER_ERROR: Duration = Duration::from_secs(5);
/// How long a task waits without being woken before it looks again.
const IDLE: Duration = Duration::from_secs(30);
/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Tessera-Signature";

/// One change of the segment, as sent.
#[derive(Debug, Clone)]
struct Change {
    version: i64,
    key: String,
    unified_id: String,
    change: String,
    at: i64,
}

impl Change {
    fn position(&self) -> Cursor {
        Cursor {
            version: self.version,
            key: self.key.clone(),
        }
    }
}

/// What a round of work ended with.
enum Next {
    /// Everything reached is delivered: wait to be woken.
    Idle,
    /// The engine or the destination is gone.
    Stop,
}

/// The task of `destination`: runs until aborted or the engine goes.
pub async fn run(engine: Weak<Engine>, destination: Destination, mut wake: watch::Receiver<u64>) {
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        // A redirect would turn the POST into a GET without the body and count as
        // delivered: a 3xx is a failure like any other non-2xx.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(destination = %destination.name, "cannot make an HTTP client: {e}");
            return;
        }
    };
    let mut task = Task {
        engine,
        destination,
        client,
        cursor: None,
        seen: None,
    };
    loop {
        wake.borrow_and_update();
        match task.round().await {
            Ok(Next::Stop) => return,
            Ok(Next::Idle) => {}
            Err(e) => {
                warn!(destination = %task.destination.name, "cannot deliver the segment's changes (trying again in 5 s): {e}");
                task.seen = None;
                tokio::time::sleep(AFTER_ERROR).await;
                continue;
            }
        }
        if tokio::time::timeout(IDLE, wake.changed())
            .await
            .is_ok_and(|r| r.is_err())
        {
            return;
        }
    }
}

struct Task {
    engine: Weak<Engine>,
    destination: Destination,
    client: reqwest::Client,
    /// Where the destination is (read from `tessera.deliveries` on the first round).
    cursor: Option<Cursor>,
    /// The segment version whose changes are all delivered.
    seen: Option<u64>,
}

impl Task {
    /// Deliver every change the segment's stored result has reached.
    async fn round(&mut self) -> Result<Next> {
        let Some(engine) = self.engine.upgrade() else {
            return Ok(Next::Stop);
        };
        let d = &self.destination;
        let Some(reached) = engine.segment_reached(&d.segment).await else {
            return Ok(Next::Idle);
        };
        if self.seen == Some(reached) {
            return Ok(Next::Idle);
        }
        let cursor = match &self.cursor {
            Some(c) => c.clone(),
            None => {
                let ctx = engine.session_context();
                let c = engine.activation().deliveries().cursor(&ctx, &d.id).await?;
                self.cursor = Some(c.clone());
                c
            }
        };
        let secret = engine.activation().destinations().secret(d);
        let pending = pending(&engine, d, &secret, &cursor, reached).await?;
        drop(engine);
        if !pending.is_empty() {
            info!(destination = %d.name, changes = pending.len(), "delivering segment changes");
        }
        for batch in pending.chunks(BATCH) {
            if !self.deliver(batch, &secret).await? {
                return Ok(Next::Stop);
            }
        }
        self.seen = Some(reached);
        Ok(Next::Idle)
    }

    /// Send `batch` until the receiver takes it (false: the engine went meanwhile).
    async fn deliver(&mut self, batch: &[Change], secret: &str) -> Result<bool> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(true);
        };
        let last = last.position();
        let d = &self.destination;
        // The batch's key and `sent_at` name what is sent: they change only when the
        // changes sent do (someone's consent changed between attempts), so that a
        // receiver enforcing idempotency keys sees identical retries.
        let mut sent_as: Option<(String, String)> = None;
        let mut attempt = Attempt {
            destination: d,
            batch_key: String::new(),
            attempt: 0,
            status: Status::Withheld,
            http_status: None,
            error: None,
            changes: 0,
            withheld: 0,
            first_version: first.version,
            last: &last,
            attempted_at: 0,
            duration_ms: 0,
            next_attempt_at: None,
        };
        loop {
            // Consent is checked again on every attempt: a withdrawal while the receiver
            // was down is respected.
            let Some(engine) = self.engine.upgrade() else {
                return Ok(false);
            };
            let consents = engine.consent_index();
            let erased = erased(&engine, batch)?;
            let sent: Vec<&Change> = batch
                .iter()
                .zip(erased)
                .filter(|(c, erased)| !erased && consents.allows(&c.unified_id, &d.purpose))
                .map(|(c, _)| c)
                .collect();
            let keys: Vec<&str> = sent.iter().map(|c| c.key.as_str()).collect();
            let batch_key = key(secret, &format!("batch\0{}", keys.join("\0")));
            let sent_at = match &sent_as {
                Some((k, at)) if *k == batch_key => at.clone(),
                _ => rfc3339(now_micros()),
            };
            sent_as = Some((batch_key.clone(), sent_at.clone()));
            let sent: Vec<serde_json::Value> = sent
                .iter()
                .map(|c| {
                    json!({
                        "key": c.key,
                        "unified_id": c.unified_id,
                        "change": c.change,
                        "at": rfc3339(c.at),
                        "version": c.version,
                    })
                })
                .collect();
            attempt.changes = sent.len() as i64;
            attempt.withheld = (batch.len() - sent.len()) as i64;
            attempt.attempted_at = now_micros();
            attempt.batch_key = batch_key.clone();
            if sent.is_empty() {
                attempt.status = Status::Withheld;
                attempt.http_status = None;
                attempt.error = None;
                attempt.next_attempt_at = None;
                engine.activation().deliveries().record(&attempt).await?;
                self.cursor = Some(last.clone());
                return Ok(true);
            }
            drop(engine);
            attempt.attempt += 1;
            let body = json!({
                "destination": d.name,
                "segment": d.segment,
                "batch_key": batch_key,
                "sent_at": sent_at,
                "changes": sent,
            })
            .to_string();
            let started = Instant::now();
            let outcome = self.post(body, secret, &batch_key, attempt.attempt).await;
            attempt.duration_ms = started.elapsed().as_millis() as i64;
            let wait = match outcome {
                Ok(status) if (200..300).contains(&status) => {
                    attempt.status = Status::Delivered;
                    attempt.http_status = Some(i64::from(status));
                    attempt.error = None;
                    attempt.next_attempt_at = None;
                    None
                }
                Ok(status) => {
                    attempt.http_status = Some(i64::from(status));
                    attempt.error = Some(format!("the receiver answered {status}"));
                    Some(backoff(attempt.attempt, None))
                }
                Err(Failure {
                    error,
                    retry_after,
                    status,
                }) => {
                    attempt.http_status = status.map(i64::from);
                    attempt.error = Some(error);
                    Some(backoff(attempt.attempt, retry_after))
                }
            };
            if let Some(wait) = wait {
                attempt.status = Status::Failed;
                attempt.next_attempt_at = Some(attempt.attempted_at + wait.as_micros() as i64);
            }
            let Some(engine) = self.engine.upgrade() else {
                return Ok(false);
            };
            if let Err(e) = engine.activation().deliveries().record(&attempt).await {
                warn!(destination = %d.name, "cannot record a delivery attempt: {e}");
            }
            drop(engine);
            match wait {
                None => {
                    debug!(destination = %d.name, changes = attempt.changes, "batch delivered");
                    self.cursor = Some(last.clone());
                    return Ok(true);
                }
                Some(wait) => {
                    warn!(
                        destination = %d.name,
                        attempt = attempt.attempt,
                        error = attempt.error.as_deref().unwrap_or_default(),
                        "delivery failed; trying again in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// POST `body`; the status the receiver answered with.
    async fn post(
        &self,
        body: String,
        secret: &str,
        batch_key: &str,
        attempt: i64,
    ) -> std::result::Result<u16, Failure> {
        let signature = hex(&crate::auth::scram::hmac(
            secret.as_bytes(),
            body.as_bytes(),
        ));
        let response = self
            .client
            .post(&self.destination.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", batch_key)
            .header("X-Tessera-Destination", &self.destination.name)
            .header("X-Tessera-Attempt", attempt.to_string())
            .header(SIGNATURE_HEADER, format!("sha256={signature}"))
            .body(body)
            .send()
            .await
            .map_err(|e| Failure {
                error: describe(e),
                retry_after: None,
                status: None,
            })?;
        let status = response.status().as_u16();
        if matches!(status, 429 | 503) {
            let retry_after = response
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(Failure {
                error: format!("the receiver answered {status}"),
                retry_after,
                status: Some(status),
            });
        }
        Ok(status)
    }
}

/// A request that got no 2xx answer.
struct Failure {
    error: String,
    retry_after: Option<Duration>,
    status: Option<u16>,
}

/// An error of the HTTP client with its causes (reqwest's own message says little),
/// without the URL, which may hold a password.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The wait before attempt `attempt + 1`: doubling from [`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`], with up to a fifth more at random so that receivers coming back
/// are not hit by every sender at once; a receiver's `Retry-After` (up to the
/// maximum) is obeyed.
fn backoff(attempt: i64, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait.clamp(FIRST_BACKOFF, MAX_BACKOFF);
    }
    let doublings = attempt.clamp(1, 20) as u32 - 1;
    let base = FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF);
    base.mul_f64(1.0 + rand::random::<f64>() / 5.0)
        .min(MAX_BACKOFF)
}

/// Which changes of `batch` are about people erased since it was read (`forget_subject`
/// lists their unified id): they are not sent.
fn erased(engine: &Engine, batch: &[Change]) -> Result<Vec<bool>> {
    let ids: datafusion::arrow::array::ArrayRef = std::sync::Arc::new(
        batch
            .iter()
            .map(|c| Some(c.unified_id.as_str()))
            .collect::<datafusion::arrow::array::StringArray>(),
    );
    let checks = [(ids, crate::access::erasure::Check::Id)];
    let erased = engine.suppression().erased(&checks, batch.len())?;
    Ok(erased.iter().map(|e| e == Some(true)).collect())
}

/// The changes of `d`'s segment after `cursor`, up to version `reached`, in order.
async fn pending(
    engine: &Engine,
    d: &Destination,
    secret: &str,
    cursor: &Cursor,
    reached: u64,
) -> Result<Vec<Change>> {
    let ctx = engine.session_context();
    let wanted = col("segment")
        .eq(lit(d.segment.as_str()))
        .and(col("version").gt_eq(lit(cursor.version)))
        .and(col("version").lt_eq(lit(reached as i64)));
    let batches = ctx
        .table("tessera.segment_changes")
        .await?
        .filter(wanted)?
        .select_columns(&["unified_id", "change", "at", "version"])?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let text = |i: usize| cast(b.column(i), &DataType::Utf8).map_err(DataFusionError::from);
        let (ids, changes) = (text(0)?, text(1)?);
        let (ids, changes) = (as_string_array(&ids)?, as_string_array(&changes)?);
        let at = cast(b.column(2), &DataType::Int64).map_err(DataFusionError::from)?;
        let at = as_int64_array(&at)?;
        let versions = as_int64_array(b.column(3))?;
        for i in 0..b.num_rows() {
            let (version, unified_id, change) = (versions.value(i), ids.value(i), changes.value(i));
            let change = Change {
                version,
                key: key(
                    secret,
                    &format!("{}\0{version}\0{change}\0{unified_id}", d.segment),
                ),
                unified_id: unified_id.to_string(),
                change: change.to_string(),
                at: if at.is_null(i) { 0 } else { at.value(i) },
            };
            if change.position() > *cursor {
                out.push(change);
            }
        }
    }
    out.sort_unstable_by(|a, b| (a.version, &a.key).cmp(&(b.version, &b.key)));
    Ok(out)
}

/// A key (32 hex digits) naming `what` for the holder of `secret`: the same on every
/// attempt and after restarts.
fn key(secret: &str, what: &str) -> String {
    let mut k = hex(&crate::auth::scram::hmac(
        secret.as_bytes(),
        what.as_bytes(),
    ));
    k.truncate(32);
    k
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_and_obeys_retry_after() {
        for (attempt, low) in [(1, 1), (2, 2), (3, 4), (4, 8)] {
            let wait = backoff(attempt, None);
            let low = Duration::from_secs(low);
            assert!(
                wait >= low && wait <= low.mul_f64(1.2),
                "{attempt}: {wait:?}"
            );
        }
        assert_eq!(backoff(40, None), MAX_BACKOFF);
        assert_eq!(
            backoff(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(backoff(1, Some(Duration::from_secs(86_400))), MAX_BACKOFF);
    }

    #[test]
    fn keys_are_stable_and_differ_per_secret() {
        let a = key("whsec_a", "s\u{0}1\u{0}entered\u{0}u1");
        assert_eq!(a.len(), 32);
        assert_eq!(a, key("whsec_a", "s\u{0}1\u{0}entered\u{0}u1"));
        assert_ne!(a, key("whsec_b", "s\u{0}1\u{0}entered\u{0}u1"));
        assert_ne!(a, key("whsec_a", "s\u{0}1\u{0}exited\u{0}u1"));
        assert_eq!(rfc3339(1_000_000), "1970-01-01T00:00:01.000000Z");
    }
}
