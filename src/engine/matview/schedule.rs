//! Scheduled refreshes: views created `WITH (refresh_interval = '5 minutes')` are
//! refreshed by `tessera serve` once that long has passed since their last refresh (by
//! schedule or by hand). A scheduled refresh is an ordinary one: it does nothing when no
//! input changed, and a failure is recorded in `tessera.materialized_views`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};

use crate::engine::Engine;

/// How often the scheduler looks for due views.
const TICK: Duration = Duration::from_secs(1);

/// Start the scheduler; it runs until the returned task is aborted.
pub fn spawn_scheduler(engine: Arc<Engine>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for runtime in engine.matviews.due(Instant::now()) {
                let engine = engine.clone();
                // Each in its own task: a long refresh does not hold up the others.
                tokio::spawn(async move {
                    let name = runtime.table.name().to_string();
                    match engine.refresh_materialized_view(&name, true).await {
                        Ok(rows) => debug!(view = %name, rows, "scheduled refresh done"),
                        Err(e) => warn!(view = %name, "scheduled refresh failed: {e}"),
                    }
                    runtime.reschedule();
                    runtime.scheduled.store(false, Ordering::Release);
                });
            }
        }
    })
}
